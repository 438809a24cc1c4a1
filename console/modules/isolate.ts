import type { Command } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import type { IsolateParams, IsolateResult } from "../../proto/api.js";
import { addActionFlags, collect, duration, globalsOf, handle, type SweepFlags } from "../cli-kit.js";
import { homeDir, openClient } from "../home.js";
import { readLab } from "../lab/lab.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet isolate`: cut hosts off the network while keeping the agents' NATS
// link, after a snapshot of their volatile state. It changes hosts, so by
// default it needs two investigators' signatures: the first submits and the
// action waits until a second approves it (dragnet action approve ID).

const listOf = (v: unknown) => (Array.isArray(v) ? v.join(" ") : "");

export function isolationRow(r: IsolateResult) {
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

export const ISOLATION_COLUMNS = [
  { key: "isolated", header: "isolated" },
  { key: "since", header: "since" },
  { key: "method", header: "method" },
  { key: "kept", header: "kept (NATS)", show: listOf },
  { key: "releaseAt", header: "release at" },
  { key: "snapshot", header: "snapshot before isolation" },
];

const formatter: ModuleFormatter<IsolateResult> = {
  columns: ISOLATION_COLUMNS,
  rows: (r) => [isolationRow(r)],
};

interface IsolateFlags extends SweepFlags {
  allow?: string[];
  allowDns?: boolean;
  releaseAfter?: number;
  releaseOnLinkLoss?: number;
  forceHost?: boolean;
}

function register(program: Command, send: SendAction): void {
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
      if (!params.forceHost) await refuseHostLabAgents(command, flags.target);
      return send(command, flags, nameWith("isolate", params), [
        { module: { $case: "isolate", value: params } },
      ]);
    }),
  );
}

/**
 * The agent refuses to isolate a lab agent that shares the machine's network
 * namespace — but only once two people have signed. This console runs that lab
 * (its home holds lab.json, without --netns): it says so before anyone signs.
 */
async function refuseHostLabAgents(command: Command, target: string): Promise<void> {
  const globals = globalsOf(command);
  const lab = readLab(homeDir(globals));
  if (!lab?.running || lab.netns) return;
  const api = await openClient(globals);
  try {
    const inHost = (await api.previewTarget(target)).filter((a) => a.tags.lab === "true");
    if (inHost.length === 0) return;
    throw new DragnetError(
      Codes.PARAMS,
      `${inHost.map((a) => a.hostname).join(", ")}: lab agent${inHost.length === 1 ? "" : "s"} in this machine's own network namespace; isolating ${inHost.length === 1 ? "it" : "them"} would cut off the machine you work on. Use \`dragnet lab up --netns\`, or --force-host if you mean it (nothing was signed)`,
    );
  } finally {
    api.close();
  }
}

export const isolateConsole = defineConsoleModule({
  name: "isolate",
  commands: ["isolate"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
