import type { Command } from "commander";
import { Alert, type StoredAlert } from "../../proto/api.js";
import { checkTarget } from "../action-builder.js";
import { globalsOf, handle, instantOf, nonNegativeInt, withApi } from "../cli-kit.js";
import { diffBlock } from "../modules/drift.js";
import { type Format, formatOf, isoTime, printable, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// `dragnet alerts`: what the agents' persistent watches reported (`dragnet
// drift watch start`), as the coordinator stored it — the recent ones, or
// live with --follow.

interface AlertsFlags {
  target?: string;
  since?: string;
  limit: number;
  follow?: boolean;
  count?: number;
}

const COLUMNS = [
  { key: "at", header: "at" },
  { key: "hostname", header: "hostname" },
  { key: "watch", header: "watch" },
  { key: "detectedBy", header: "seen by" },
  { key: "path", header: "path" },
  { key: "kind", header: "change" },
  { key: "what", header: "what" },
];

/** One row per change (an alert with changes left out says how many). */
function rowsOf(s: StoredAlert) {
  const a = s.alert!;
  const base = {
    at: isoTime(a.atMs),
    hostname: a.hostname || a.agentId,
    watch: a.watch,
    detectedBy: a.detectedBy,
  };
  const rows = a.changes.map((c) => ({ ...base, path: c.path, kind: c.kind, what: c.what.join(",") }));
  if (a.changesOmitted > 0)
    rows.push({ ...base, path: `(${a.changesOmitted} more changes left out)`, kind: "", what: "" });
  return rows;
}

/** An alert as JSON: the coordinator's sequence number and receipt time, then the alert as the agent sent it. */
function jsonOf(s: StoredAlert): string {
  return JSON.stringify({
    seq: s.seq,
    receivedAt: isoTime(s.receivedAtMs),
    ...(Alert.toJSON(s.alert!) as object),
  });
}

function diffsOf(s: StoredAlert): string {
  const a = s.alert!;
  return a.changes.map((c) => diffBlock(a.hostname || a.agentId, c)).join("");
}

/** Prints alerts as they come: JSON lines, CSV rows, or for people a block per alert with its diffs. */
function printLive(s: StoredAlert, format: Format, csv: RowWriter): void {
  if (format === "json") {
    process.stdout.write(`${jsonOf(s)}\n`);
    return;
  }
  if (format === "csv") {
    for (const row of rowsOf(s)) csv.add(row);
    return;
  }
  const a = s.alert!;
  let text = `${isoTime(a.atMs)}  ${printable(a.hostname || a.agentId)}  watch ${printable(a.watch)} (${a.detectedBy})\n`;
  for (const c of a.changes) {
    text += `  ${c.kind.padEnd(8)} ${printable(c.path)}${c.what.length ? `  ${c.what.join(",")}` : ""}\n`;
  }
  if (a.changesOmitted > 0) text += `  (${a.changesOmitted} more changes left out)\n`;
  process.stdout.write(`${text}${diffsOf(s)}${diffsOf(s) ? "\n" : ""}`);
}

export function registerAlertsCommand(program: Command): void {
  program
    .command("alerts")
    .description("alerts from the agents' persistent watches (dragnet drift watch start), newest last")
    .option("-t, --target <expr>", "only alerts of agents this target expression selects")
    .option("--since <when>", "received since this ISO time or this long ago (default 24h)")
    .option("--limit <n>", "at most this many past alerts (the newest)", nonNegativeInt("--limit"), 100)
    .option("-f, --follow", "after the past ones, print each new alert as it arrives, until interrupted")
    .option(
      "--count <n>",
      "with --follow: stop once this many alerts (past and new) are printed",
      nonNegativeInt("--count"),
    )
    .addHelpText(
      "after",
      `
Examples:
  dragnet alerts --since 2h
  dragnet alerts --follow -t 'tags.role == "web"' --since 0s`,
    )
    .action(
      handle(async (flags: AlertsFlags, command: Command) => {
        const globals = globalsOf(command);
        const format = formatOf(globals);
        const target = flags.target ?? "";
        if (target) checkTarget(target);
        const sinceMs = instantOf("--since", flags.since ?? "24h") ?? 0;
        return withApi(command, async (api) => {
          // Oldest first, as a log reads.
          const past = (await api.listAlerts(target, sinceMs, Math.max(flags.limit, 1))).reverse();
          const writer = new RowWriter(format, COLUMNS, { withAgent: false });
          if (flags.follow) {
            for (const s of past) printLive(s, format, writer);
            let seen = past.length;
            if (flags.count !== undefined && seen >= flags.count) return EXIT_FOUND;
            const interrupted = new AbortController();
            const onSignal = () => interrupted.abort();
            process.once("SIGINT", onSignal);
            process.once("SIGTERM", onSignal);
            try {
              await api.watchAlerts(
                target,
                past.at(-1)?.seq ?? 0,
                (s) => {
                  printLive(s, format, writer);
                  return !(flags.count !== undefined && ++seen >= flags.count);
                },
                interrupted.signal,
              );
            } finally {
              process.off("SIGINT", onSignal);
              process.off("SIGTERM", onSignal);
            }
            return EXIT_FOUND;
          }
          if (format === "json") for (const s of past) process.stdout.write(`${jsonOf(s)}\n`);
          else for (const s of past) for (const row of rowsOf(s)) writer.add(row);
          writer.end();
          if (format === "table") process.stdout.write(past.map(diffsOf).join(""));
          return past.length > 0 ? EXIT_FOUND : EXIT_NOTHING;
        });
      }),
    );
}
