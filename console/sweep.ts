import { formatDuration, signAction } from "../common/mod.js";
import {
  type ActionBody,
  type ActionSummary,
  type AgentResult,
  CommandStatus,
  type OperationResult,
} from "../proto/api.js";
import type { CoordinatorApi } from "./client.js";
import type { ResultRows } from "./output/formatters.js";
import { type Format, RowWriter } from "./output/rows.js";

// Submitting an action and following it: results as rows on stdout while they
// arrive, a progress bar and per-agent problems on stderr, and a summary line.
// Exit status like grep: 0 found, 1 nothing found, 2 error.

export const EXIT_FOUND = 0;
export const EXIT_NOTHING = 1;
export const EXIT_ERROR = 2;
/** The action waits for another investigator's approval: nothing was sent yet. */
export const EXIT_PENDING = 3;

export interface FollowOptions {
  format: Format;
  /** The modules' formatters, and the modules whose columns to show. */
  rows: ResultRows;
  modules: string[];
  /** Keep waiting for offline agents until the action expires. */
  waitOffline?: boolean;
  /** Stop waiting after this long, whoever has not answered. */
  deadlineMs?: number;
  /** How long agents that never acknowledged may stay silent, once nothing else runs (default 10 s). */
  silenceMs?: number;
  quiet?: boolean;
  err?: NodeJS.WritableStream;
  /** Called with each agent's operations instead of printing rows (views that need every answer first). */
  collect?: (agent: { id: string; hostname: string }, op: OperationResult) => void;
  /** With `collect`: print the rows as well (the view adds to them rather than replacing them). */
  rowsToo?: boolean;
}

function statusWord(status: CommandStatus): string {
  return (CommandStatus[status] ?? "unknown").replace("COMMAND_STATUS_", "").toLowerCase();
}

/** 9,842 rather than 9842: fleet-sized numbers are read at a glance. */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

export function summaryLine(c: ActionSummary["counts"]): string {
  if (!c) return "";
  const answered = c.success + c.failed;
  const parts = [
    `${count(c.targeted)} targeted`,
    `${count(answered)} answered`,
    `${count(c.failed + c.timeout)} failed`,
    `${count(c.found)} found`,
  ];
  if (c.rejected) parts.push(`${count(c.rejected)} rejected`);
  if (c.expired) parts.push(`${count(c.expired)} expired`);
  if (c.cancelled) parts.push(`${count(c.cancelled)} cancelled`);
  const open = c.pending + c.sent + c.running;
  if (open)
    parts.push(
      `${count(open)} still open${c.waitingOffline ? ` (${count(c.waitingOffline)} waiting for offline agents)` : ""}`,
    );
  return parts.join(", ");
}

export function exitCodeOf(c: ActionSummary["counts"]): number {
  if (!c) return EXIT_ERROR;
  if (c.found > 0) return EXIT_FOUND;
  if (c.failed + c.rejected + c.timeout > 0) return EXIT_ERROR;
  return EXIT_NOTHING;
}

/** What a person must know of an agent's answer beside its rows: an operation that failed, an answer cut to fit. */
export function answerNotes(r: AgentResult): string[] {
  const who = `${r.hostname} (${r.agentId})`;
  const out: string[] = [];
  for (const op of r.result?.operations ?? []) {
    if (op.problem) out.push(`${who}: ${op.problem.message} [${op.problem.code}]`);
    if (op.truncated) {
      out.push(
        `${who}: the answer was over the 1 MiB result limit and was cut: ${op.omitted} entries left out (narrow the query to see them)`,
      );
    }
  }
  return out;
}

/** Whether an agent's answer was stored after its action completed (a late result after a timeout): the answer changed since. */
export function arrivedLate(r: AgentResult, s: ActionSummary): boolean {
  return s.completedAtMs > 0 && r.updatedAtMs > s.completedAtMs;
}

/** How long agents that never acknowledged may stay silent once nothing else runs. */
const SILENCE_MS = 10_000;
/** The states the summary counts as open (pending + sent + running): who has not answered. */
const OPEN = new Set([
  CommandStatus.COMMAND_STATUS_PENDING,
  CommandStatus.COMMAND_STATUS_SENT,
  CommandStatus.COMMAND_STATUS_RUNNING,
]);

/** Follows an action to its end (or until only offline agents remain); returns the exit status. */
export async function followAction(
  api: CoordinatorApi,
  actionId: string,
  opts: FollowOptions,
): Promise<number> {
  const err = opts.err ?? process.stderr;
  const writer = new RowWriter(opts.format, opts.rows.columnsFor(opts.modules));
  const started = Date.now();
  const tty = (err as NodeJS.WriteStream).isTTY === true && !opts.quiet;
  // Loaded for a terminal only: the commands that import this module's exit codes need none of it.
  const cliProgress = tty ? (await import("cli-progress")).default : undefined;
  const bar = cliProgress
    ? new cliProgress.SingleBar(
        {
          stream: err as NodeJS.WriteStream,
          format: " {bar} {value}/{total} answered | {failures} failed | {elapsed}",
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let last: ActionSummary | undefined;
  const problems: string[] = [];
  const note = (line: string) => {
    if (bar) problems.push(line);
    else if (!opts.quiet) err.write(`${line}\n`);
  };
  const updateBar = (s: ActionSummary) => {
    const c = s.counts!;
    const finished = c.success + c.failed + c.rejected + c.timeout + c.expired + c.cancelled;
    if (bar) {
      const payload = {
        failures: c.failed + c.rejected + c.timeout,
        elapsed: formatDuration(Date.now() - started),
      };
      if (!last) bar.start(c.targeted, finished, payload);
      else bar.update(finished, payload);
    }
  };
  // A command reports once; should a late result follow a timeout, its rows are
  // printed then, and nothing is printed twice.
  const printed = new Set<string>();
  const noted = new Set<string>();
  const onResult = (r: AgentResult) => {
    const agent = { id: r.agentId, hostname: r.hostname };
    if (r.result && !printed.has(r.commandId)) {
      printed.add(r.commandId);
      for (const op of r.result.operations) {
        opts.collect?.(agent, op);
        if (!opts.collect || opts.rowsToo) for (const row of opts.rows.of(op)) writer.add({ agent, ...row });
      }
      for (const line of answerNotes(r)) note(line);
    }
    if (r.status !== CommandStatus.COMMAND_STATUS_SUCCESS && r.problem && !noted.has(r.commandId)) {
      noted.add(r.commandId);
      note(
        `${r.hostname || r.agentId} (${r.agentId}): ${statusWord(r.status)}: ${r.problem.message} [${r.problem.code}]`,
      );
    }
  };
  // A host that died seconds ago still counts as online: its command is sent, never
  // acknowledged. Once nothing runs and nothing has changed for a while, the sweep
  // stops waiting for such agents (the action goes on) — or at --deadline in any case.
  const stop = new AbortController();
  let stoppedWaiting: "deadline" | "silence" | undefined;
  let lastChange = Date.now();
  let lastShape = "";
  const silenceMs = opts.silenceMs ?? SILENCE_MS;
  const watchdog = setInterval(() => {
    const now = Date.now();
    if (opts.deadlineMs !== undefined && now - started >= opts.deadlineMs) stoppedWaiting = "deadline";
    else if (!opts.waitOffline && last?.counts && !last.complete) {
      const c = last.counts;
      const open = c.pending + c.sent + c.running;
      if (open > 0 && c.running === 0 && now - lastChange >= silenceMs) stoppedWaiting = "silence";
    }
    if (stoppedWaiting) stop.abort();
  }, 250);
  const ticker = bar ? setInterval(() => last && updateBar(last), 1000) : undefined;
  try {
    await api.watchAction(
      actionId,
      (event) => {
        const e = event.event;
        if (!e) return true;
        if (e.$case === "result") {
          lastChange = Date.now();
          onResult(e.value);
          return true;
        }
        updateBar(e.value);
        const c = e.value.counts!;
        // A progress event that changes no count is not progress.
        const shape = JSON.stringify(c);
        if (shape !== lastShape) lastChange = Date.now();
        lastShape = shape;
        last = e.value;
        if (e.$case === "done") return false;
        const open = c.pending + c.sent + c.running;
        // Everything that can answer has: stop unless asked to wait for offline agents.
        if (!opts.waitOffline && open > 0 && open === c.waitingOffline) return false;
        return true;
      },
      stop.signal,
      (from, to, why) => process.stderr.write(`\nwatch moved from coordinator ${from} to ${to} (${why})\n`),
    );
  } finally {
    clearInterval(ticker);
    clearInterval(watchdog);
    bar?.stop();
  }
  for (const line of problems) err.write(`${line}\n`);
  writer.end();
  if (!last?.counts) return EXIT_ERROR;
  if (stoppedWaiting) {
    // Who did not answer, by name: the investigator decides whether to wait.
    const detail = await api.getAction(actionId, true);
    const silent = detail.results.filter((r) => OPEN.has(r.status));
    const c = detail.summary!.counts!;
    err.write(
      `${summaryLine(c)} (${formatDuration(Date.now() - started)})\n` +
        `${count(silent.length)} not answering${stoppedWaiting === "deadline" ? " at the deadline" : ` for ${formatDuration(silenceMs)}`}: ` +
        `${silent
          .slice(0, 10)
          .map((r) => r.hostname || r.agentId)
          .join(", ")}${silent.length > 10 ? ` and ${count(silent.length - 10)} more` : ""}` +
        ` — their answers are still taken: dragnet action follow ${actionId}\n`,
    );
    // Something found stands; otherwise the answer is incomplete.
    return c.found > 0 ? EXIT_FOUND : EXIT_ERROR;
  }
  if (!opts.quiet) {
    err.write(`${summaryLine(last.counts)} (${formatDuration(Date.now() - started)})\n`);
    const c = last.counts;
    if (c.timeout > 0) {
      err.write(
        `a result that comes after its timeout is still stored, and flagged late: see dragnet action show ${last.id}\n`,
      );
    }
    if (c.waitingOffline && !last.complete) {
      err.write(
        `offline agents get the action when they return before ${new Date(last.expiresAtMs).toISOString()}; see: dragnet action follow ${last.id}\n`,
      );
    }
  }
  return exitCodeOf(last.counts);
}

/**
 * Signs (with the investigator's key), submits and follows an action. An
 * action whose modules need more weight than this signature carries waits in
 * the coordinator for a second investigator: its id is printed with how to
 * approve it, and nothing more happens here.
 */
export async function sweep(
  api: CoordinatorApi,
  body: ActionBody,
  opts: FollowOptions & { noWait?: boolean },
): Promise<number> {
  const signed = signAction(body, api.key);
  const res = await api.submitAction(signed);
  const err = opts.err ?? process.stderr;
  if (res.pendingApproval) {
    err.write(
      `action ${res.actionId} waits for approval: signed with weight ${res.weight}, needs ${res.requiredWeight}; nothing was sent.\n` +
        `another investigator approves it, with their own key: dragnet --key THEIR.key action approve ${res.actionId}\n`,
    );
    process.stdout.write(
      opts.format === "json"
        ? `${JSON.stringify({ actionId: res.actionId, pendingApproval: true, weight: res.weight, requiredWeight: res.requiredWeight })}\n`
        : `${res.actionId}\n`,
    );
    return EXIT_PENDING;
  }
  if (!opts.quiet) {
    err.write(
      `action ${res.actionId} submitted: ${res.targeted} agent${res.targeted === 1 ? "" : "s"} targeted${res.offline ? ` (${res.offline} offline)` : ""}\n`,
    );
  }
  if (opts.noWait) {
    process.stdout.write(
      opts.format === "json"
        ? `${JSON.stringify({ actionId: res.actionId, pendingApproval: false, targeted: res.targeted, offline: res.offline })}\n`
        : `${res.actionId}\n`,
    );
    return EXIT_FOUND;
  }
  return followAction(api, res.actionId, opts);
}
