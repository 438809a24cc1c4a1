import type { Command } from "commander";
import type { DriftChange, DriftParams, DriftResult, OperationResult } from "../../proto/mod.js";
import { addActionFlags, collect, globalsOf, handle, nonNegativeInt, type SweepFlags } from "../cli-kit.js";
import { registerFormatter } from "../output/formatters.js";
import { formatOf, isoTime, printable, RowWriter } from "../output/rows.js";
import { paramsError, sendAction } from "../send.js";

// `dragnet drift`: baselines of paths on the agents, and what changed since —
// per host, or stacked across the fleet so the odd ones out stand out.

registerFormatter("drift", {
  columns: [
    { key: "path", header: "path" },
    { key: "kind", header: "change" },
    { key: "what", header: "what" },
    { key: "name", header: "baseline" },
    { key: "entries", header: "entries" },
    { key: "created", header: "created" },
  ],
  rows(result) {
    const r = result as DriftResult;
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
      name: r.name,
      before: c.before,
      after: c.after,
      diff: c.diff,
    }));
  },
});

/** What makes two hosts' changes "the same": path, kind, what, and the resulting state. */
function stackKey(c: DriftChange): string {
  const a = c.after;
  return JSON.stringify([c.path, c.kind, c.what, a?.type, a?.sha256, a?.target, a?.mode, a?.uid, a?.gid]);
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
      if (!s.change.diff) continue;
      process.stdout.write(
        `\n${s.hosts.length} host${s.hosts.length === 1 ? "" : "s"}: ${printable(s.change.path)}\n`,
      );
      process.stdout.write(`${printable(s.change.diff, true)}`);
    }
  }
}

async function run(
  flags: SweepFlags,
  command: Command,
  params: DriftParams,
  stack: boolean,
): Promise<number> {
  const stacks = new Map<string, Stack>();
  const gather = (agent: { id: string; hostname: string }, o: OperationResult) => {
    if (o.module?.$case !== "drift") return;
    for (const change of o.module.value.changes) {
      const key = stackKey(change);
      const s = stacks.get(key) ?? { change, hosts: [] };
      s.hosts.push(agent.hostname || agent.id);
      stacks.set(key, s);
    }
  };
  const code = await sendAction(
    command,
    flags,
    `drift ${params.mode} ${params.name}`,
    [{ module: { $case: "drift", value: params } }],
    stack ? { collect: gather } : {},
  );
  if (stack) printStacks(stacks, formatOf(globalsOf(command)));
  return code;
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
}

export function registerDriftCommand(program: Command): void {
  const drift = program
    .command("drift")
    .description("baselines of paths on the agents, and what changed since");
  const baseline = drift
    .command("baseline")
    .description("record (or --list) named baselines on the targeted agents")
    .option("--path <path>", "absolute path to record (repeatable)", collect)
    .option("--exclude <regex>", "leave out paths matching this regex (repeatable)", collect)
    .option("--name <name>", "the baseline's name (default: default)")
    .option("--list", "list the agents' baselines instead: names, times, sizes")
    .option(
      "--max-entries <n>",
      "record at most this many entries (default 200,000)",
      nonNegativeInt("--max-entries"),
    )
    .option(
      "--max-content-bytes <n>",
      "keep the text of files up to this size, for diffs (default 65,536)",
      nonNegativeInt("--max-content-bytes"),
    );
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
      const params: DriftParams = {
        mode: flags.list ? "list" : "baseline",
        name: flags.name ?? "default",
        paths: flags.path ?? [],
        excludes: flags.exclude ?? [],
        maxEntries: flags.maxEntries,
        maxContentBytes: flags.maxContentBytes,
        rehash: false,
      };
      return run(flags, command, params, false);
    }),
  );
  const check = drift
    .command("check")
    .description("what changed since the baseline: added, removed, changed, with diffs (exit 0 when any)")
    .option("--name <name>", "the baseline to compare with (default: default)")
    .option("--rehash", "hash every file again (by default files of unchanged size, mtime and ctime are not)")
    .option("--stack", "group identical changes across hosts, rarest first");
  addActionFlags(check);
  check.addHelpText(
    "after",
    `
Examples:
  dragnet drift check -t 'tags.role == "web"' --name etc --stack
  dragnet drift check -t 'hostname == "web-7"' --name etc --json`,
  );
  check.action(
    handle(async (flags: CheckFlags, command: Command) => {
      const params: DriftParams = {
        mode: "check",
        name: flags.name ?? "default",
        paths: [],
        excludes: [],
        maxEntries: undefined,
        maxContentBytes: undefined,
        rehash: flags.rehash ?? false,
      };
      return run(flags, command, params, flags.stack ?? false);
    }),
  );
}
