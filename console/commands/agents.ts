import type { Command } from "commander";
import { formatDuration } from "../../common/mod.js";
import { AgentStatus } from "../../proto/api.js";
import { checkTarget } from "../action-builder.js";
import { globalsOf, handle } from "../cli-kit.js";
import { openClient } from "../home.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

export function statusName(status: AgentStatus): string {
  return (AgentStatus[status] ?? "unknown").replace("AGENT_STATUS_", "").toLowerCase();
}

export function registerAgentsCommand(program: Command): Command {
  return program
    .command("agents")
    .description("list the agents the coordinator knows")
    .option("-t, --target <expr>", "only agents this target expression selects")
    .action(
      handle(async (flags: { target?: string }, command: Command) => {
        const globals = globalsOf(command);
        if (flags.target) checkTarget(flags.target);
        const api = openClient(globals);
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
}
