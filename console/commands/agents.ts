import type { Command } from "commander";
import { formatDuration } from "../../common/mod.js";
import { type AgentInfo, AgentStatus } from "../../proto/api.js";
import { checkTarget } from "../action-builder.js";
import { globalsOf, handle, outcome, withApi } from "../cli-kit.js";
import { openClient } from "../home.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

export function statusName(status: AgentStatus): string {
  return (AgentStatus[status] ?? "unknown").replace("AGENT_STATUS_", "").toLowerCase();
}

/** Past this, an agent's clock is off by more than heartbeat delivery explains: its actions' windows misfire. */
const CLOCK_SKEW_WARN_MS = 30_000;

/** What the agent reports wrong with itself, and a clock far from the coordinator's. */
export function agentProblems(a: AgentInfo): string[] {
  const skew = Number(a.clockSkewMs);
  const out = [...a.problems];
  if (Math.abs(skew) >= CLOCK_SKEW_WARN_MS) {
    out.push(
      `clock skew: its clock is ${formatDuration(Math.abs(skew))} ${skew > 0 ? "ahead of" : "behind"} the coordinator's (actions may be refused as expired or not yet valid)`,
    );
  }
  return out;
}

export function registerAgentsCommand(program: Command): Command {
  const agents = program
    .command("agents")
    .description("list the agents the coordinator knows")
    .option("-t, --target <expr>", "only agents this target expression selects")
    .action(
      handle(async (flags: { target?: string }, command: Command) => {
        const globals = globalsOf(command);
        if (flags.target) checkTarget(flags.target);
        const api = await openClient(globals);
        try {
          const agents = await api.listAgents(flags.target ?? "");
          const now = Date.now();
          const writer = new RowWriter(
            formatOf(globals),
            [
              { key: "hostname", header: "hostname" },
              { key: "id", header: "id" },
              { key: "os", header: "os" },
              { key: "version", header: "version" },
              { key: "addresses", header: "addresses", show: (v) => (v as string[]).join(" ") },
              {
                key: "tags",
                header: "tags",
                show: (v) =>
                  Object.entries(v as Record<string, string>)
                    .map(([k, val]) => `${k}=${val}`)
                    .join(" "),
              },
              { key: "status", header: "status" },
              { key: "isolated", header: "isolated", show: (v) => (v ? "yes" : "") },
              { key: "upgrade", header: "last upgrade" },
              { key: "problems", header: "problems", show: (v) => (v as string[]).join("; ") },
              {
                key: "lastSeen",
                header: "last seen",
                show: (v) => `${formatDuration(now - Date.parse(v as string))} ago`,
              },
            ],
            { withAgent: false },
          );
          for (const a of agents) {
            writer.add({
              id: a.id,
              hostname: a.hostname,
              os: a.os,
              osRelease: a.osRelease,
              arch: a.arch,
              version: a.version,
              addresses: a.addresses,
              tags: a.tags,
              status: statusName(a.status),
              isolated: a.isolated,
              upgrade: a.upgradeState
                ? `${a.upgradeVersion} ${a.upgradeState}${a.upgradeDetail ? `: ${a.upgradeDetail}` : ""}`
                : "",
              problems: agentProblems(a),
              clockSkewMs: Number(a.clockSkewMs),
              lastSeen: isoTime(a.lastSeenMs),
            });
          }
          writer.end();
          return agents.length > 0 ? EXIT_FOUND : EXIT_NOTHING;
        } finally {
          api.close();
        }
      }),
    );
  agents
    .command("revoke <id>")
    .description(
      "refuse an agent's credentials for good (stolen, host retired): coordinators refuse what it sends and send it nothing (admin)",
    )
    .option("--reason <text>", "why, for the audit log", "")
    .action(
      handle(async (id: string, flags: { reason: string }, command: Command) =>
        withApi(command, async (api) => {
          const r = await api.revokeAgent(id, flags.reason);
          outcome(
            command,
            { agentId: r.agentId, hostname: r.hostname, revoked: true, already: !r.revoked },
            r.revoked
              ? `agent ${r.agentId}${r.hostname ? ` (${r.hostname})` : ""} revoked: its messages are refused, it is sent nothing, its credentials are not renewed; the NATS server lets it connect until its credentials expire`
              : `agent ${r.agentId} was revoked already`,
          );
          return EXIT_FOUND;
        }),
      ),
    );
  return agents;
}
