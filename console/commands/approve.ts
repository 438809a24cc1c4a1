import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { Codes, DragnetError, formatDuration, signBytes } from "../../common/mod.js";
import { ActionBody, ActionState, Operation } from "../../proto/mod.js";
import { globalsOf, handle } from "../cli-kit.js";
import { openClient } from "../home.js";
import { formatOf } from "../output/rows.js";
import { EXIT_FOUND, followAction } from "../sweep.js";

// `dragnet action approve ID`: the second investigator of the two-person rule.
// What is shown is decoded from the very bytes that get signed, so a
// coordinator cannot show one action and have another one approved.

export interface ApproveFlags {
  yes?: boolean;
  wait: boolean;
  quiet?: boolean;
}

/** The action as an approver must see it before signing: what runs, where, until when. */
export function describeForApproval(
  body: ActionBody,
  signers: string[],
  targetCount: number,
  now = Date.now(),
): string {
  const operations = body.operations.map(
    (op, i) =>
      `  ${i + 1}. ${op.module?.$case ?? "(unknown module)"} ${JSON.stringify(Operation.toJSON(op))}`,
  );
  return [
    `action ${body.id}  ${body.name}`,
    `target:     ${body.target}  (${targetCount} agent${targetCount === 1 ? "" : "s"} now)`,
    "operations:",
    ...operations,
    ...(body.description ? [`why:        ${body.description}`] : []),
    `signed by:  ${signers.join(", ") || "nobody"}`,
    `valid:      ${new Date(body.validFromMs).toISOString()} to ${new Date(body.expiresAtMs).toISOString()} (${formatDuration(Math.max(0, body.expiresAtMs - now))} left)`,
    `timeout:    ${formatDuration(body.timeoutMs)} per agent`,
    "",
  ].join("\n");
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function registerApproveCommand(action: Command): void {
  action
    .command("approve <id>")
    .description("co-sign an action waiting for approval (shows what will run and where first)")
    .option("-y, --yes", "approve without asking (for scripts)")
    .option("--no-wait", "return once approved instead of following the results")
    .option("-q, --quiet", "no progress or summary on stderr")
    .action(
      handle(async (id: string, flags: ApproveFlags, command: Command) => {
        const globals = globalsOf(command);
        const api = openClient(globals);
        try {
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
            throw new DragnetError(
              Codes.DECODE,
              `the action's body does not decode: ${(err as Error).message}`,
            );
          }
          if (body.id !== summary.id) {
            throw new DragnetError(
              Codes.ACTION_INVALID,
              `the coordinator sent the body of ${body.id} for ${summary.id}`,
            );
          }
          const targets = await api.previewTarget(body.target);
          process.stderr.write(describeForApproval(body, summary.signerNames, targets.length));
          process.stderr.write(`weight so far: ${summary.weight} of ${summary.requiredWeight} needed\n`);
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
            return EXIT_FOUND;
          }
          if (!flags.quiet) {
            process.stderr.write(
              `action ${res.actionId} approved and released: ${res.targeted} agent${res.targeted === 1 ? "" : "s"} targeted${res.offline ? ` (${res.offline} offline)` : ""}\n`,
            );
          }
          if (!flags.wait) {
            process.stdout.write(`${res.actionId}\n`);
            return EXIT_FOUND;
          }
          return await followAction(api, res.actionId, {
            format: formatOf(globals),
            modules: summary.modules,
            quiet: flags.quiet,
          });
        } finally {
          api.close();
        }
      }),
    );
}
