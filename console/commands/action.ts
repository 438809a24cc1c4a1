import type { Command } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import {
  ActionBody,
  ActionState,
  type ActionSummary,
  type AgentResult,
  CommandStatus,
} from "../../proto/api.js";
import { duration, globalsOf, handle, nonNegativeInt } from "../cli-kit.js";
import type { CoordinatorApi } from "../client.js";
import { openClient } from "../home.js";
import type { ResultRows } from "../output/formatters.js";
import { formatOf, isoTime, printable, RowWriter } from "../output/rows.js";
import type { SendAction } from "../send.js";
import {
  answerNotes,
  arrivedLate,
  count,
  EXIT_FOUND,
  exitCodeOf,
  followAction,
  summaryLine,
} from "../sweep.js";
import { operationLines, registerApproveCommand } from "./approve.js";
import { registerImportCommand } from "./import.js";

// `dragnet action list|show|follow|approve`: what was asked, of whom, and what came back.

export function statusWord(status: CommandStatus): string {
  return (CommandStatus[status] ?? "unknown").replace("COMMAND_STATUS_", "").toLowerCase();
}

/** Where an action stands: waiting for approval, unapproved (expired waiting), open or complete. */
export function actionStateWord(a: ActionSummary): string {
  if (a.state === ActionState.ACTION_STATE_PENDING_APPROVAL) return "pending approval";
  if (a.state === ActionState.ACTION_STATE_UNAPPROVED) return "unapproved";
  return a.complete ? "complete" : "open";
}

/** Every row the agents' answers hold, each with its agent, through `writer`; returns what must be said beside them. */
export function writeResults(results: readonly AgentResult[], rows: ResultRows, writer: RowWriter): string[] {
  const notes: string[] = [];
  for (const r of results) {
    for (const op of r.result?.operations ?? []) {
      for (const row of rows.of(op)) writer.add({ agent: { id: r.agentId, hostname: r.hostname }, ...row });
    }
    notes.push(...answerNotes(r));
  }
  writer.end();
  return notes;
}

export function registerActionCommand(program: Command, rows: ResultRows, send: SendAction): void {
  const action = program.command("action").description("actions already submitted");

  action
    .command("list")
    .description("recent actions, newest first")
    .option("--limit <n>", "how many", nonNegativeInt("--limit"), 20)
    .option("--pending", "only actions waiting for a second investigator's approval")
    .option("--follow", "with --pending: keep watching, printing each action as it starts waiting")
    .option("--count <n>", "with --follow: stop after this many", nonNegativeInt("--count"))
    .action(
      handle(
        async (
          flags: { limit: number; pending?: boolean; follow?: boolean; count?: number },
          command: Command,
        ) => {
          const globals = globalsOf(command);
          const api = await openClient(globals);
          try {
            if (flags.follow) {
              if (!flags.pending)
                throw new DragnetError(Codes.PARAMS, "--follow watches --pending actions: give both");
              await followPending(api, globals.json === true, flags.count);
              return EXIT_FOUND;
            }
            const actions = await api.listActions(flags.limit, flags.pending === true);
            const writer = new RowWriter(
              formatOf(globals),
              [
                { key: "id", header: "id" },
                { key: "name", header: "name" },
                { key: "target", header: "target" },
                { key: "submitted", header: "submitted" },
                { key: "targeted", header: "targeted" },
                { key: "answered", header: "answered" },
                { key: "found", header: "found" },
                { key: "state", header: "state" },
                { key: "signers", header: "signed by", show: (v) => (v as string[]).join(", ") },
              ],
              { withAgent: false },
            );
            for (const a of actions) {
              const c = a.counts!;
              writer.add({
                id: a.id,
                name: a.name,
                target: a.target,
                modules: a.modules,
                submitted: isoTime(a.submittedAtMs),
                expires: isoTime(a.expiresAtMs),
                targeted: c.targeted,
                answered: c.success + c.failed,
                found: c.found,
                state: actionStateWord(a),
                weight: a.weight,
                requiredWeight: a.requiredWeight,
                signers: a.signerNames,
              });
            }
            writer.end();
            return EXIT_FOUND;
          } finally {
            api.close();
          }
        },
      ),
    );

  action
    .command("show <id>")
    .description("an action's summary and each agent's status (id or unique prefix)")
    .option("--results", "print what the agents found instead of their status")
    .option(
      "--state <state>",
      "only agents in this state (success, failed, rejected, timeout, expired, pending, ...)",
    )
    .action(
      handle(async (id: string, flags: { results?: boolean; state?: string }, command: Command) => {
        const globals = globalsOf(command);
        const format = formatOf(globals);
        const api = await openClient(globals);
        try {
          const detail = await api.getAction(id, true);
          const s = detail.summary!;
          if (format === "table") {
            const c = s.counts!;
            const answered = c.success + c.failed;
            const ratio = c.targeted ? ((100 * answered) / c.targeted).toFixed(1) : "0.0";
            process.stdout.write(
              [
                `action ${s.id}  ${s.name}  (${actionStateWord(s)})`,
                `target:    ${s.target}`,
                `modules:   ${s.modules.join(", ")}`,
                // What was asked, as signed: a past action can be reviewed, not just counted.
                ...(detail.action?.body
                  ? ["operations:", ...operationLines(ActionBody.decode(detail.action.body))]
                  : []),
                `signed by: ${s.signerNames.map((n, i) => `${n} (${s.signerKeyIds[i]})`).join(", ")}`,
                `submitted: ${isoTime(s.submittedAtMs)}   expires: ${isoTime(s.expiresAtMs)}`,
                ...(s.state === ActionState.ACTION_STATE_PENDING_APPROVAL
                  ? [
                      `approval:  weight ${s.weight} of ${s.requiredWeight}; nothing sent yet (dragnet action approve ${s.id})`,
                    ]
                  : []),
                `${count(answered)} of ${count(c.targeted)} answered (${ratio}%): ${summaryLine(c)}`,
                "",
              ].join("\n"),
            );
          }
          const wanted = flags.state?.toLowerCase();
          const results = detail.results.filter((r) => !wanted || statusWord(r.status) === wanted);
          const late = results.filter((r) => arrivedLate(r, s));
          if (flags.results) {
            const notes = writeResults(results, rows, new RowWriter(format, rows.columnsFor(s.modules)));
            for (const line of notes) process.stderr.write(`${line}\n`);
          } else {
            const writer = new RowWriter(format, [
              { key: "status", header: "status" },
              { key: "found", header: "found", show: (v) => (v ? "yes" : "") },
              {
                key: "problem",
                header: "problem",
                show: (v) => (v ? `${(v as { message: string }).message}` : ""),
              },
              { key: "late", header: "late", show: (v) => (v ? "after completion" : "") },
            ]);
            for (const r of results) {
              writer.add({
                agent: { id: r.agentId, hostname: r.hostname },
                command: r.commandId,
                status: statusWord(r.status),
                found: r.result?.found ?? false,
                ...(r.problem ? { problem: r.problem } : {}),
                late: arrivedLate(r, s),
                updated: isoTime(r.updatedAtMs),
              });
            }
            writer.end();
          }
          if (late.length > 0) {
            process.stderr.write(
              `the answer changed after the action completed (${isoTime(s.completedAtMs)}): ${late.length} result${late.length === 1 ? "" : "s"} came late — ${late.map((r) => r.hostname || r.agentId).join(", ")}\n`,
            );
          }
          return exitCodeOf(s.counts);
        } finally {
          api.close();
        }
      }),
    );

  action
    .command("follow <id>")
    .description("stream an action's results until it completes")
    .option("--wait-offline", "keep waiting for offline agents until the action expires")
    .option("--deadline <duration>", "stop waiting after this long", duration("--deadline"))
    .option("-q, --quiet", "no progress or summary on stderr")
    .action(
      handle(
        async (
          id: string,
          flags: { waitOffline?: boolean; deadline?: number; quiet?: boolean },
          command: Command,
        ) => {
          const globals = globalsOf(command);
          const api = await openClient(globals);
          try {
            const detail = await api.getAction(id, false);
            return await followAction(api, detail.summary!.id, {
              format: formatOf(globals),
              rows,
              modules: detail.summary!.modules,
              waitOffline: flags.waitOffline,
              deadlineMs: flags.deadline,
              quiet: flags.quiet,
            });
          } finally {
            api.close();
          }
        },
      ),
    );

  registerApproveCommand(action, rows);
  registerImportCommand(action, send);
}

/** How often `action list --pending --follow` asks. */
const PENDING_POLL_MS = 2000;

/**
 * Prints each action that waits for approval as it appears (those waiting
 * already first), until `count` were printed or the process is stopped.
 */
async function followPending(api: CoordinatorApi, json: boolean, count?: number): Promise<void> {
  const seen = new Set<string>();
  for (;;) {
    const waiting = (await api.listActions(100, true)).reverse();
    for (const a of waiting) {
      if (seen.has(a.id)) continue;
      seen.add(a.id);
      process.stdout.write(
        json
          ? `${JSON.stringify({ id: a.id, name: a.name, target: a.target, modules: a.modules, signers: a.signerNames, weight: a.weight, requiredWeight: a.requiredWeight, expires: isoTime(a.expiresAtMs) })}\n`
          : `${isoTime(a.submittedAtMs)}  ${a.id}  ${printable(a.name)}  target ${printable(a.target)}  signed by ${a.signerNames.join(", ")} (weight ${a.weight} of ${a.requiredWeight}) — dragnet action approve ${a.id}\n`,
      );
      if (count !== undefined && seen.size >= count) return;
    }
    await new Promise((r) => setTimeout(r, PENDING_POLL_MS));
  }
}
