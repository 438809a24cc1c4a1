import type { Command } from "commander";
import type { DriftChange, DriftParams, DriftResult, OperationResult } from "../../proto/api.js";
import {
  addActionFlags,
  collect,
  duration,
  globalsOf,
  handle,
  nonNegativeInt,
  paramsError,
  type SweepFlags,
} from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { formatOf, isoTime, printable, RowWriter } from "../output/rows.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet drift`: baselines of paths on the agents, and what changed since —
// per host, or stacked across the fleet so the odd ones out stand out; and
// persistent watches that alert on change (read with `dragnet alerts`).

const listOf = (v: unknown) => (Array.isArray(v) ? v.join(" ") : "");

const formatter: ModuleFormatter<DriftResult> = {
  columns: [
    { key: "path", header: "path" },
    { key: "kind", header: "change" },
    { key: "what", header: "what" },
    { key: "origin", header: "origin" },
    { key: "name", header: "baseline" },
    { key: "entries", header: "entries" },
    { key: "bytes", header: "size" },
    { key: "created", header: "created" },
    { key: "watch", header: "watch" },
    { key: "paths", header: "paths", show: listOf },
    { key: "directoriesNotified", header: "dirs notified" },
    { key: "alertsSent", header: "alerts" },
    { key: "lastAlert", header: "last alert" },
  ],
  rows(r) {
    if (r.mode.startsWith("watch_")) {
      return r.watches.map(({ name, ...w }) => ({
        ...w,
        watch: name,
        created: isoTime(w.createdAtMs),
        lastAlert: isoTime(w.lastAlertAtMs),
        stopped: r.mode === "watch_stop",
      }));
    }
    if (r.mode === "list") {
      return r.baselines.map((b) => ({
        name: b.name,
        entries: b.entries,
        bytes: b.bytes,
        created: isoTime(b.createdAtMs),
        paths: b.paths,
      }));
    }
    if (r.mode === "baseline") {
      return [{ name: r.name, entries: r.entries, skipped: r.skipped, created: isoTime(r.baselineAtMs) }];
    }
    return r.changes.map((c) => ({
      path: c.path,
      kind: c.kind,
      what: c.what.join(","),
      origin: originOf(c),
      name: r.name,
      before: c.before,
      after: c.after,
      diff: c.diff,
    }));
  },
};

/** "package (dpkg:openssl)", "modified (dpkg:openssh-server)", "unowned", or "" for what has none. */
export function originOf(c: DriftChange): string {
  return c.package ? `${c.origin} (${c.package})` : c.origin;
}

/** Changes the package database vouches for: an upgrade put exactly these bytes there. */
export const isUpgrade = (c: DriftChange): boolean => c.origin === "package";

/** The note for changes left out by --skip-upgrades. */
export function setAsideNote(count: number): string {
  return `${count} change${count === 1 ? "" : "s"} set aside as package upgrades (origin "package"); run without --skip-upgrades to see them\n`;
}

/** A change's unified diff, headed by where it was seen, for a terminal. */
export function diffBlock(where: string, change: DriftChange): string {
  return change.diff
    ? `\n${printable(where)}: ${printable(change.path)}\n${printable(change.diff, true)}`
    : "";
}

/** What makes two hosts' changes "the same": path, kind, what, and the resulting state. */
function stackKey(c: DriftChange): string {
  const a = c.after;
  return JSON.stringify([
    c.path,
    c.kind,
    c.what,
    c.origin,
    a?.type,
    a?.sha256,
    a?.target,
    a?.mode,
    a?.uid,
    a?.gid,
  ]);
}

interface Stack {
  change: DriftChange;
  hosts: string[];
}

/** Prints identical changes grouped across hosts, rarest first: the odd ones out come first. */
function printStacks(stacks: Map<string, Stack>, format: ReturnType<typeof formatOf>): void {
  const ordered = [...stacks.values()].sort(
    (a, b) => a.hosts.length - b.hosts.length || a.change.path.localeCompare(b.change.path),
  );
  const writer = new RowWriter(
    format,
    [
      { key: "hosts", header: "hosts" },
      { key: "path", header: "path" },
      { key: "kind", header: "change" },
      { key: "what", header: "what" },
      { key: "origin", header: "origin" },
      { key: "on", header: "on" },
    ],
    { withAgent: false },
  );
  for (const s of ordered) {
    writer.add({
      hosts: s.hosts.length,
      path: s.change.path,
      kind: s.change.kind,
      what: s.change.what.join(","),
      origin: originOf(s.change),
      on:
        s.hosts.length <= 5
          ? s.hosts.join(" ")
          : `${s.hosts.slice(0, 5).join(" ")} and ${s.hosts.length - 5} more`,
      ...(format === "json" ? { hostnames: s.hosts, diff: s.change.diff, after: s.change.after } : {}),
    });
  }
  writer.end();
  if (format === "table") {
    for (const s of ordered) {
      process.stdout.write(diffBlock(`${s.hosts.length} host${s.hosts.length === 1 ? "" : "s"}`, s.change));
    }
  }
}

const NO_VIEW = { stack: false, skipUpgrades: false };

async function run(
  send: SendAction,
  flags: SweepFlags,
  command: Command,
  params: DriftParams,
  view: { stack: boolean; skipUpgrades: boolean },
): Promise<number> {
  const { stack, skipUpgrades } = view;
  const format = formatOf(globalsOf(command));
  const stacks = new Map<string, Stack>();
  /** Diffs to print under the table (JSON and CSV rows carry them already). */
  let diffs = "";
  let setAside = 0;
  const gather = (agent: { id: string; hostname: string }, o: OperationResult) => {
    if (o.module?.$case !== "drift") return;
    if (skipUpgrades) {
      // The rows are drawn from this result after it is gathered: what is set aside here is not shown.
      const all = o.module.value.changes;
      o.module.value.changes = all.filter((c) => !isUpgrade(c));
      setAside += all.length - o.module.value.changes.length;
    }
    for (const change of o.module.value.changes) {
      if (!stack) {
        diffs += diffBlock(agent.hostname || agent.id, change);
        continue;
      }
      const key = stackKey(change);
      const s = stacks.get(key) ?? { change, hosts: [] };
      s.hosts.push(agent.hostname || agent.id);
      stacks.set(key, s);
    }
  };
  const code = await send(
    command,
    flags,
    `drift ${params.mode.replace("_", " ")} ${params.name}`,
    [{ module: { $case: "drift", value: params } }],
    { collect: gather, rowsToo: !stack },
  );
  if (stack) printStacks(stacks, format);
  else if (format === "table") process.stdout.write(diffs);
  if (setAside > 0) process.stderr.write(setAsideNote(setAside));
  return code;
}

/** Parameters of a drift operation: the given ones over the defaults. */
function driftParams(p: Partial<DriftParams> & Pick<DriftParams, "mode">): DriftParams {
  const given = Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined));
  return {
    mode: p.mode,
    name: "default",
    paths: [],
    excludes: [],
    maxEntries: undefined,
    maxContentBytes: undefined,
    rehash: false,
    rescanSeconds: undefined,
    ...given,
  };
}

interface BaselineFlags extends SweepFlags {
  path?: string[];
  exclude?: string[];
  name?: string;
  list?: boolean;
  maxEntries?: number;
  maxContentBytes?: number;
}

interface CheckFlags extends SweepFlags {
  name?: string;
  rehash?: boolean;
  stack?: boolean;
  skipUpgrades?: boolean;
}

/** What a baseline and a watch both take: which paths, what to leave out, and the limits of the snapshot. */
function addSnapshotOptions(cmd: Command, verb: "record" | "watch"): void {
  cmd
    .option("--path <path>", `absolute path to ${verb} (repeatable)`, collect)
    .option("--exclude <regex>", "leave out paths matching this regex (repeatable)", collect)
    .option(
      "--max-entries <n>",
      `${verb} at most this many entries (default 200,000)`,
      nonNegativeInt("--max-entries"),
    )
    .option(
      "--max-content-bytes <n>",
      "keep the text of files up to this size, for diffs (default 65,536)",
      nonNegativeInt("--max-content-bytes"),
    );
}

function register(program: Command, send: SendAction): void {
  const drift = program
    .command("drift")
    .description("baselines of paths on the agents, and what changed since");
  const baseline = drift
    .command("baseline")
    .description("record (or --list) named baselines on the targeted agents")
    .option("--name <name>", "the baseline's name (default: default)")
    .option("--list", "list the agents' baselines instead: names, times, sizes");
  addSnapshotOptions(baseline, "record");
  addActionFlags(baseline);
  baseline.addHelpText(
    "after",
    `
Examples:
  dragnet drift baseline -t 'tags.role == "web"' --path /etc --exclude '^/etc/(mtab|ld\\.so\\.cache)$' --name etc
  dragnet drift baseline -t all --list`,
  );
  baseline.action(
    handle(async (flags: BaselineFlags, command: Command) => {
      if (!flags.list && !flags.path) paramsError("give --path (repeatable) to record, or --list");
      const params = driftParams({
        mode: flags.list ? "list" : "baseline",
        name: flags.name,
        paths: flags.path,
        excludes: flags.exclude,
        maxEntries: flags.maxEntries,
        maxContentBytes: flags.maxContentBytes,
      });
      return run(send, flags, command, params, NO_VIEW);
    }),
  );
  const check = drift
    .command("check")
    .description("what changed since the baseline: added, removed, changed, with diffs (exit 0 when any)")
    .option("--name <name>", "the baseline to compare with (default: default)")
    .option("--rehash", "hash every file again (by default files of unchanged size, mtime and ctime are not)")
    .option("--stack", "group identical changes across hosts, rarest first")
    .option(
      "--skip-upgrades",
      'leave out changes the package database vouches for (origin "package": the file now hashes to what its package records)',
    );
  addActionFlags(check);
  check.addHelpText(
    "after",
    `
Examples:
  dragnet drift check -t 'tags.role == "web"' --name etc --stack
  dragnet drift check -t all --name usr --stack --skip-upgrades   # what no package upgrade explains
  dragnet drift check -t 'hostname == "web-7"' --name etc --json`,
  );
  check.action(
    handle(async (flags: CheckFlags, command: Command) => {
      const params = driftParams({ mode: "check", name: flags.name, rehash: flags.rehash });
      return run(send, flags, command, params, {
        stack: flags.stack ?? false,
        skipUpgrades: flags.skipUpgrades ?? false,
      });
    }),
  );
  registerWatchCommands(drift, send);
}

interface WatchFlags extends SweepFlags {
  path?: string[];
  exclude?: string[];
  name?: string;
  rescan?: number;
  maxEntries?: number;
  maxContentBytes?: number;
}

function registerWatchCommands(drift: Command, send: SendAction): void {
  const watch = drift
    .command("watch")
    .description(
      "persistent watches on the agents: an alert within seconds of a change (see: dragnet alerts)",
    );
  const start = watch
    .command("start")
    .description("install (or replace) a watch on the targeted agents; it survives agent restarts")
    .option("--name <name>", "the watch's name (default: default)")
    .option(
      "--rescan <duration>",
      "full rescan interval, the safety net for missed notifications (default 5m, 5s to 24h)",
      (v: string) => Math.round(duration("--rescan")(v) / 1000),
    );
  addSnapshotOptions(start, "watch");
  addActionFlags(start);
  start.addHelpText(
    "after",
    `
Examples:
  dragnet drift watch start -t 'tags.role == "web"' --path /etc/ssh --path /etc/cron.d --name sshcron
  dragnet alerts --follow -t 'tags.role == "web"'`,
  );
  start.action(
    handle(async (flags: WatchFlags, command: Command) => {
      if (!flags.path) paramsError("give --path (repeatable): what to watch");
      const params = driftParams({
        mode: "watch_start",
        name: flags.name,
        paths: flags.path,
        excludes: flags.exclude,
        maxEntries: flags.maxEntries,
        maxContentBytes: flags.maxContentBytes,
        rescanSeconds: flags.rescan,
      });
      return run(send, flags, command, params, NO_VIEW);
    }),
  );
  const list = watch.command("list").description("the watches on the targeted agents, with alert counts");
  addActionFlags(list);
  list.action(
    handle(async (flags: WatchFlags, command: Command) =>
      run(send, flags, command, driftParams({ mode: "watch_list" }), NO_VIEW),
    ),
  );
  const stop = watch
    .command("stop")
    .description("remove a watch from the targeted agents")
    .requiredOption("--name <name>", "the watch to remove");
  addActionFlags(stop);
  stop.action(
    handle(async (flags: WatchFlags, command: Command) =>
      run(send, flags, command, driftParams({ mode: "watch_stop", name: flags.name }), NO_VIEW),
    ),
  );
}

export const driftConsole = defineConsoleModule({
  name: "drift",
  commands: ["drift baseline", "drift check", "drift watch start", "drift watch list", "drift watch stop"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
