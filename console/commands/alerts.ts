import type { Command } from "commander";
import { rowHeadline } from "../../common/row-headline.js";
import { Alert, type StoredAlert } from "../../proto/api.js";
import { checkTarget } from "../action-builder.js";
import { globalsOf, handle, instantOf, nonNegativeInt, withApi } from "../cli-kit.js";
import { diffBlock, isUpgrade, originOf, setAsideNote } from "../modules/drift.js";
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
  skipUpgrades?: boolean;
}

const COLUMNS = [
  { key: "at", header: "at" },
  { key: "hostname", header: "hostname" },
  { key: "watch", header: "watch" },
  { key: "detectedBy", header: "seen by" },
  { key: "path", header: "path" },
  { key: "kind", header: "change" },
  { key: "what", header: "what" },
  { key: "origin", header: "origin" },
];

/** One row per change (an alert with changes left out says how many). */
function rowsOf(s: StoredAlert) {
  const a = s.alert!;
  const base = {
    at: isoTime(a.atMs),
    hostname: a.hostname || a.agentId,
    watch: a.scheduleId ? `${a.watch} #${a.run}` : a.watch,
    detectedBy: a.detectedBy,
  };
  const rows = a.changes.map((c) => ({
    ...base,
    path: c.path,
    kind: c.kind,
    what: c.what.join(","),
    origin: originOf(c),
  }));
  // A schedule's alert: the rows of the answer that appeared or vanished since the host's previous run.
  for (const r of a.rows) {
    rows.push({
      ...base,
      path: rowHeadline(r.row),
      kind: r.vanished ? "vanished" : "new",
      what: r.module,
      origin: "",
    });
  }
  if (a.changesOmitted > 0)
    rows.push({
      ...base,
      path: `(${a.changesOmitted} more changes left out)`,
      kind: "",
      what: "",
      origin: "",
    });
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

/**
 * The alert without the changes an upgrade explains (--skip-upgrades), or
 * undefined when nothing else is left; `setAside` counts what was left out.
 */
function withoutUpgrades(s: StoredAlert, setAside: { count: number }): StoredAlert | undefined {
  const a = s.alert!;
  const kept = a.changes.filter((c) => !isUpgrade(c));
  setAside.count += a.changes.length - kept.length;
  if (!kept.length && a.changesOmitted === 0) return undefined;
  return { ...s, alert: { ...a, changes: kept } };
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
  const source = a.scheduleId
    ? `schedule ${printable(a.watch)} run ${a.run}`
    : `watch ${printable(a.watch)} (${a.detectedBy})`;
  let text = `${isoTime(a.atMs)}  ${printable(a.hostname || a.agentId)}  ${source}\n`;
  for (const r of a.rows) {
    text += `  ${(r.vanished ? "vanished" : "new").padEnd(8)} ${printable(rowHeadline(r.row))}\n           ${printable(r.row)}\n`;
  }
  for (const c of a.changes) {
    const origin = originOf(c);
    text += `  ${c.kind.padEnd(8)} ${printable(c.path)}${c.what.length ? `  ${c.what.join(",")}` : ""}${origin ? `  [${printable(origin)}]` : ""}\n`;
  }
  if (a.changesOmitted > 0) text += `  (${a.changesOmitted} more changes left out)\n`;
  process.stdout.write(`${text}${diffsOf(s)}${diffsOf(s) ? "\n" : ""}`);
}

export function registerAlertsCommand(program: Command): void {
  program
    .command("alerts")
    .description(
      "alerts from the agents' persistent watches (dragnet drift watch start) and from schedules (dragnet schedule create), newest last",
    )
    .option("-t, --target <expr>", "only alerts of agents this target expression selects")
    .option("--since <when>", "received since this ISO time or this long ago (default 24h)")
    .option("--limit <n>", "at most this many past alerts (the newest)", nonNegativeInt("--limit"), 100)
    .option("-f, --follow", "after the past ones, print each new alert as it arrives, until interrupted")
    .option(
      "--count <n>",
      "with --follow: stop once this many alerts (past and new) are printed",
      nonNegativeInt("--count"),
    )
    .option(
      "--skip-upgrades",
      'leave out changes the package database vouches for (origin "package"), and alerts with nothing else',
    )
    .addHelpText(
      "after",
      `
Examples:
  dragnet alerts --since 2h
  dragnet alerts --since 7d --skip-upgrades      # what no package upgrade explains
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
          // Following: where the store stands before the past is read, so that an alert stored
          // between that read and the watch is followed, not lost (the past may show none).
          const cursor = flags.follow ? await api.alertsCursor() : 0;
          // Oldest first, as a log reads.
          const stored = (await api.listAlerts(target, sinceMs, Math.max(flags.limit, 1))).reverse();
          const setAside = { count: 0 };
          const shown = (s: StoredAlert) => (flags.skipUpgrades ? withoutUpgrades(s, setAside) : s);
          const noteSetAside = () => {
            if (setAside.count > 0) process.stderr.write(setAsideNote(setAside.count));
          };
          const past = stored.map(shown).filter((s) => s !== undefined);
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
                Math.max(cursor, stored.at(-1)?.seq ?? 0),
                (s) => {
                  const view = shown(s);
                  if (!view) return true;
                  printLive(view, format, writer);
                  return !(flags.count !== undefined && ++seen >= flags.count);
                },
                interrupted.signal,
                true,
              );
            } finally {
              process.off("SIGINT", onSignal);
              process.off("SIGTERM", onSignal);
            }
            noteSetAside();
            return EXIT_FOUND;
          }
          if (format === "json") for (const s of past) process.stdout.write(`${jsonOf(s)}\n`);
          else for (const s of past) for (const row of rowsOf(s)) writer.add(row);
          writer.end();
          if (format === "table") process.stdout.write(past.map(diffsOf).join(""));
          noteSetAside();
          return past.length > 0 ? EXIT_FOUND : EXIT_NOTHING;
        });
      }),
    );
}
