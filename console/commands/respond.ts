import type { Command } from "commander";
import type { IsolateParams, IsolateResult, KillResult, QuarantineResult } from "../../proto/api.js";
import { addActionFlags, collect, duration, handle, type SweepFlags, uint32 } from "../cli-kit.js";
import { registerFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { paramsError, sendAction } from "../send.js";

// Response: contain hosts (isolate, unisolate), end processes (kill), take
// files out of use (quarantine). These change hosts, so by
// default they need two investigators' signatures: the first submits and the
// action waits until a second approves it (dragnet action approve ID).

const listOf = (v: unknown) => (Array.isArray(v) ? v.join(" ") : "");

function isolationRow(r: IsolateResult) {
  return {
    isolated: r.isolated ? "yes" : "no",
    since: isoTime(r.sinceMs),
    method: r.method,
    kept: r.kept,
    releaseAt: isoTime(r.releaseAtMs),
    removed: r.removed,
    // The snapshot's size in the table; the whole of it with --json.
    snapshot: r.snapshot
      ? `${r.snapshot.processes.length} processes, ${r.snapshot.sockets.length} sockets, ${r.snapshot.users.length} users, ${r.snapshot.routes.length} routes`
      : "",
    volatileState: r.snapshot,
    actionId: r.actionId,
    rules: r.rules,
    errors: r.errors,
  };
}

const ISOLATION_COLUMNS = [
  { key: "isolated", header: "isolated" },
  { key: "since", header: "since" },
  { key: "method", header: "method" },
  { key: "kept", header: "kept (NATS)", show: listOf },
  { key: "releaseAt", header: "release at" },
  { key: "snapshot", header: "snapshot before isolation" },
];

registerFormatter("isolate", { columns: ISOLATION_COLUMNS, rows: (r) => [isolationRow(r as IsolateResult)] });
registerFormatter("unisolate", {
  columns: ISOLATION_COLUMNS,
  rows: (r) => [isolationRow(r as IsolateResult)],
});

registerFormatter("kill", {
  columns: [
    { key: "pid", header: "pid" },
    { key: "name", header: "name" },
    { key: "exe", header: "exe" },
    { key: "exeSha256", header: "exe sha256" },
    { key: "signal", header: "signal" },
    { key: "exited", header: "exited" },
  ],
  rows: (r) => {
    const k = r as KillResult;
    return [{ ...k.process, signal: k.signal, exited: k.exited ? "yes" : "no" }];
  },
});

registerFormatter("quarantine", {
  columns: [
    { key: "id", header: "vault id" },
    { key: "originalPath", header: "path" },
    { key: "mode", header: "mode" },
    { key: "sha256", header: "sha256" },
    { key: "quarantinedAt", header: "quarantined" },
    { key: "restored", header: "restored" },
  ],
  rows: (r) =>
    (r as QuarantineResult).files.map((f) => ({
      ...f,
      quarantinedAt: isoTime(f.quarantinedAtMs),
      restored: f.restored ? "yes" : "",
    })),
});

interface IsolateFlags extends SweepFlags {
  allow?: string[];
  allowDns?: boolean;
  releaseAfter?: number;
  releaseOnLinkLoss?: number;
  forceHost?: boolean;
}

export function registerIsolationCommands(program: Command): void {
  const isolate = program
    .command("isolate")
    .description(
      "cut the targeted hosts off the network, keeping the agents' NATS link (volatile state is snapshotted first; needs two signatures)",
    )
    .option(
      "--allow <cidr[:port]>",
      "also allow this peer, both ways (repeatable; IPv6 with a port: [2001:db8::/32]:22)",
      collect,
    )
    .option("--allow-dns", "let DNS through to the hosts' configured resolvers")
    .option(
      "--release-after <duration>",
      "lift isolation by itself after this long if no unisolate comes",
      duration("--release-after"),
    )
    .option(
      "--release-on-link-loss <duration>",
      "lift isolation when no NATS server was reachable this long (default: never, so cutting the link frees nothing)",
      duration("--release-on-link-loss"),
    )
    .option("--force-host", "isolate even a lab agent in the machine's own network namespace");
  addActionFlags(isolate);
  isolate.addHelpText(
    "after",
    `
Examples:
  dragnet isolate -t 'hostname == "web-7"' --allow 198.18.0.10/32:22 --release-after 24h
  dragnet --key bob.key action approve ID        # the second investigator
  dragnet unisolate -t 'hostname == "web-7"'`,
  );
  isolate.action(
    handle(async (flags: IsolateFlags, command: Command) => {
      const params: IsolateParams = {
        allow: flags.allow ?? [],
        allowDns: flags.allowDns ?? false,
        releaseAfterSeconds: Math.ceil((flags.releaseAfter ?? 0) / 1000),
        releaseOnLinkLossSeconds: Math.ceil((flags.releaseOnLinkLoss ?? 0) / 1000),
        forceHost: flags.forceHost ?? false,
      };
      return sendAction(command, flags, "isolate", [{ module: { $case: "isolate", value: params } }]);
    }),
  );
  const unisolate = program
    .command("unisolate")
    .description(
      "lift the agents' isolation: their own rules only, every other firewall rule stays (whether a host is isolated: dragnet agents -t isolated)",
    );
  addActionFlags(unisolate);
  unisolate.action(
    handle(async (flags: SweepFlags, command: Command) =>
      sendAction(command, flags, "unisolate", [
        { module: { $case: "unisolate", value: { statusOnly: false } } },
      ]),
    ),
  );
}

interface KillFlags extends SweepFlags {
  pid: number;
  expectName?: string;
  expectExeSha256?: string;
  signal?: string;
}

export function registerKillCommand(program: Command): void {
  const kill = program
    .command("kill")
    .description("end one process by pid, only if it is still the process you mean (needs two signatures)")
    .requiredOption("--pid <n>", "the process id", uint32("--pid"))
    .option("--expect-name <regex>", "the process name must match (so a recycled pid is never killed)")
    .option("--expect-exe-sha256 <hex>", "the executable must have this SHA-256")
    .option("--signal <KILL|TERM>", "the signal (default KILL)");
  addActionFlags(kill);
  kill.addHelpText(
    "after",
    `
Example:
  dragnet kill -t 'hostname == "web-7"' --pid 4242 --expect-name '^nc$'`,
  );
  kill.action(
    handle(async (flags: KillFlags, command: Command) =>
      sendAction(command, flags, `kill ${flags.pid}`, [
        {
          module: {
            $case: "kill",
            value: {
              pid: flags.pid,
              expectName: flags.expectName ?? "",
              expectExeSha256: flags.expectExeSha256 ?? "",
              signal: flags.signal ?? "",
            },
          },
        },
      ]),
    ),
  );
}

export function registerQuarantineCommand(program: Command): void {
  const quarantine = program
    .command("quarantine")
    .description(
      "move a file into each agent's vault (no execute bits, origin and SHA-256 recorded; needs two signatures)",
    )
    .option("--path <path>", "the file to quarantine");
  addActionFlags(quarantine, { targetRequired: false });
  quarantine.action(
    handle(async (flags: SweepFlags & { path?: string }, command: Command) => {
      if (!flags.path) paramsError("give --path (or: quarantine restore --id ID, quarantine list)");
      if (!flags.target) paramsError("give -t/--target");
      return sendAction(command, flags, `quarantine ${flags.path}`, [
        { module: { $case: "quarantine", value: { mode: "quarantine", path: flags.path, id: "" } } },
      ]);
    }),
  );
  const restore = quarantine
    .command("restore")
    .description("put a quarantined file back where it was, as it was (hash checked)")
    .requiredOption("--id <id>", "the vault id (quarantine list shows it)");
  addActionFlags(restore);
  restore.action(
    handle(async (flags: SweepFlags & { id: string }, command: Command) =>
      sendAction(command, flags, `quarantine restore ${flags.id}`, [
        { module: { $case: "quarantine", value: { mode: "restore", path: "", id: flags.id } } },
      ]),
    ),
  );
  const list = quarantine.command("list").description("the files in each agent's vault");
  addActionFlags(list);
  list.action(
    handle(async (flags: SweepFlags, command: Command) =>
      sendAction(command, flags, "quarantine list", [
        { module: { $case: "quarantine", value: { mode: "list", path: "", id: "" } } },
      ]),
    ),
  );
}
