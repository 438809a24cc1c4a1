import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import {
  aclNameOf,
  Codes,
  DragnetError,
  formatDuration,
  type Keyring,
  signBytes,
  verifySignedAction,
} from "../../common/mod.js";
import { ActionBody, ActionState, type ActionSummary, type AgentInfo, Operation } from "../../proto/api.js";
import { globalsOf, handle, outcome } from "../cli-kit.js";
import type { CoordinatorApi } from "../client.js";
import { loadConsoleKeyring, openClient } from "../home.js";
import type { ResultRows } from "../output/formatters.js";
import { formatOf, printable } from "../output/rows.js";
import { EXIT_FOUND, EXIT_PENDING, followAction } from "../sweep.js";

// `dragnet action approve ID`: the second investigator of the two-person rule.
// Nothing shown comes from the coordinator's word: the action is decoded from
// the very bytes that get signed (and refused if this console cannot show all
// of them), and who signed it so far is checked against the console's own
// keyring. So a coordinator can neither show one action and have another
// approved, nor tell each of two approvers that the other one signed first.

export interface ApproveFlags {
  yes?: boolean;
  wait: boolean;
  quiet?: boolean;
}

/** The action as an approver must see it before signing: what runs, where, until when. */
/** Each operation as signed, decoded, one line each (what approve and action show print). */
export function operationLines(body: ActionBody): string[] {
  return body.operations.map(
    (op, i) =>
      `  ${i + 1}. ${op.module?.$case ?? "(unknown module)"} ${printable(JSON.stringify(Operation.toJSON(op)))}`,
  );
}

export function describeForApproval(
  body: ActionBody,
  signers: string[],
  targetCount: number,
  now = Date.now(),
): string {
  const operations = operationLines(body);
  return [
    `action ${body.id}  ${printable(body.name)}`,
    `target:     ${printable(body.target)}  (${targetCount} agent${targetCount === 1 ? "" : "s"} now)`,
    "operations:",
    ...operations,
    ...(body.description ? [`why:        ${printable(body.description)}`] : []),
    `signed by:  ${signers.map((n) => printable(n)).join(", ") || "nobody"}`,
    `valid:      ${new Date(body.validFromMs).toISOString()} to ${new Date(body.expiresAtMs).toISOString()} (${formatDuration(Math.max(0, body.expiresAtMs - now))} left)`,
    `timeout:    ${formatDuration(body.timeoutMs)} per agent`,
    "",
  ].join("\n");
}

/** Refuses an action with parts this console cannot show: nobody approves what they cannot read. */
function checkFullyShown(body: ActionBody, bytes: Uint8Array): void {
  body.operations.forEach((op, i) => {
    if (!op.module) {
      throw new DragnetError(
        Codes.APPROVAL,
        `operation ${i + 1} is of a module this console does not know; update the console before approving`,
      );
    }
  });
  if (Buffer.compare(Buffer.from(ActionBody.encode(body).finish()), Buffer.from(bytes)) !== 0) {
    throw new DragnetError(
      Codes.APPROVAL,
      "the action holds fields this console cannot show; update the console before approving",
    );
  }
}

/** What an approver must see, checked: the body decoded from the bytes to be signed, its signers by the console's keyring. */
export interface ApprovalReview {
  summary: ActionSummary;
  body: ActionBody;
  bodyBytes: Uint8Array;
  verified: ReturnType<typeof verifySignedAction>;
  /** The weight still missing by the console's keyring, or undefined when none is. */
  before: ReturnType<Keyring["acl"]["shortfall"]>;
  /** The agents the target names now. */
  targets: AgentInfo[];
}

export async function reviewForApproval(
  api: CoordinatorApi,
  keyring: Keyring,
  id: string,
): Promise<ApprovalReview> {
  const detail = await api.getAction(id, false);
  const summary = detail.summary!;
  if (summary.state !== ActionState.ACTION_STATE_PENDING_APPROVAL) {
    throw new DragnetError(
      Codes.APPROVAL,
      `action ${summary.id} is not waiting for approval (${summary.complete ? "complete" : "already released"})`,
    );
  }
  if (!detail.action)
    throw new DragnetError(Codes.NOT_FOUND, `the coordinator sent no action body for ${summary.id}`);
  const bodyBytes = detail.action.body;
  let body: ActionBody;
  try {
    body = ActionBody.decode(bodyBytes);
  } catch (err) {
    throw new DragnetError(Codes.DECODE, `the action's body does not decode: ${(err as Error).message}`);
  }
  if (body.id !== summary.id) {
    throw new DragnetError(
      Codes.ACTION_INVALID,
      `the coordinator sent the body of ${body.id} for ${summary.id}`,
    );
  }
  checkFullyShown(body, bodyBytes);
  // Who signed, by this console's keyring: a bad or unknown signature refuses the approval.
  const verified = verifySignedAction(detail.action, keyring);
  if (verified.signers.some((s) => s.keyId === api.key.keyId)) {
    throw new DragnetError(
      Codes.APPROVAL,
      `you (${api.key.name}) already signed action ${body.id}; another investigator must approve`,
    );
  }
  const before = keyring.acl.shortfall(body.operations.map(aclNameOf), verified.signers);
  const targets = await api.previewTarget(body.target);
  return { summary, body, bodyBytes, verified, before, targets };
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function registerApproveCommand(action: Command, rows: ResultRows): void {
  action
    .command("approve <id>")
    .description("co-sign an action waiting for approval (shows what will run and where first)")
    .option("-y, --yes", "approve without asking (for scripts)")
    .option("--no-wait", "return once approved instead of following the results")
    .option("-q, --quiet", "no progress or summary on stderr")
    .action(
      handle(async (id: string, flags: ApproveFlags, command: Command) => {
        const globals = globalsOf(command);
        const keyring = loadConsoleKeyring(globals);
        const api = await openClient(globals);
        try {
          const { summary, body, bodyBytes, verified, before, targets } = await reviewForApproval(
            api,
            keyring,
            id,
          );
          const signers = verified.signers.map((s) => `${s.name} (${s.keyId}, signature checked)`);
          process.stderr.write(describeForApproval(body, signers, targets.length));
          process.stderr.write(
            before
              ? `weight so far: ${before.weight} of the ${before.required} that ${before.module} needs (by your keyring)\n`
              : "by your keyring, its signatures already carry the weight every operation needs\n",
          );
          if (!flags.yes) {
            if (!process.stdin.isTTY) {
              throw new DragnetError(
                Codes.APPROVAL,
                "not approved: confirm on a terminal, or pass --yes to approve without asking",
              );
            }
            if (!(await confirm(`approve as ${api.key.name}? [y/N] `))) {
              process.stderr.write("not approved\n");
              return 1;
            }
          }
          const res = await api.approveAction(summary.id, signBytes(bodyBytes, api.key));
          if (!res.released) {
            process.stderr.write(
              `approved by ${api.key.name}: weight ${res.weight} of ${res.requiredWeight}; it still waits for another investigator\n`,
            );
            if (globals.json) {
              outcome(
                command,
                {
                  actionId: res.actionId,
                  released: false,
                  weight: res.weight,
                  requiredWeight: res.requiredWeight,
                },
                "",
              );
            }
            return EXIT_PENDING;
          }
          if (!flags.quiet) {
            process.stderr.write(
              `action ${res.actionId} approved and released: ${res.targeted} agent${res.targeted === 1 ? "" : "s"} targeted${res.offline ? ` (${res.offline} offline)` : ""}\n`,
            );
          }
          if (!flags.wait) {
            outcome(
              command,
              { actionId: res.actionId, released: true, targeted: res.targeted, offline: res.offline },
              res.actionId,
            );
            return EXIT_FOUND;
          }
          return await followAction(api, res.actionId, {
            format: formatOf(globals),
            rows,
            modules: summary.modules,
            quiet: flags.quiet,
          });
        } finally {
          api.close();
        }
      }),
    );
}
