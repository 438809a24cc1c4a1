import type { Command } from "commander";
import { globalsOf, handle, nonNegativeInt, withApi } from "../cli-kit.js";
import { openClient } from "../home.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";
import { EXIT_FOUND, EXIT_NOTHING } from "../sweep.js";

// `dragnet audit`: the coordinator's record of who did what — every API call
// with the investigator who made it, refusals with their reason, approvals,
// and commands agents refused.

export function registerAuditCommand(program: Command): void {
  const audit = program
    .command("audit")
    .description("the coordinator's audit log, newest first")
    .option("--limit <n>", "how many entries", nonNegativeInt("--limit"), 50)
    .option("--action <id>", "only entries about this action (id or unique prefix)")
    .action(
      handle(async (flags: { limit: number; action?: string }, command: Command) => {
        const globals = globalsOf(command);
        const api = await openClient(globals);
        try {
          const entries = await api.listAudit(flags.limit, flags.action ?? "");
          const writer = new RowWriter(
            formatOf(globals),
            [
              { key: "at", header: "at" },
              { key: "actor", header: "who" },
              { key: "event", header: "what" },
              { key: "actionId", header: "action" },
              { key: "agentId", header: "agent" },
              { key: "code", header: "code" },
              { key: "message", header: "detail" },
            ],
            { withAgent: false },
          );
          for (const e of entries) writer.add({ ...e, at: isoTime(e.atMs) });
          writer.end();
          return entries.length ? EXIT_FOUND : EXIT_NOTHING;
        } finally {
          api.close();
        }
      }),
    );
  audit
    .command("verify")
    .description(
      "check the audit log's sealed chains: a row deleted, edited or cut off is named (exit 0 intact, 1 not)",
    )
    .action(
      handle(async (_flags: unknown, command: Command) =>
        withApi(command, async (api) => {
          const chains = await api.verifyAudit();
          const globals = globalsOf(command);
          const writer = new RowWriter(
            formatOf(globals),
            [
              { key: "chain", header: "coordinator" },
              { key: "state", header: "chain" },
              { key: "entries", header: "entries" },
              { key: "brokenAt", header: "broken at" },
              { key: "problem", header: "problem" },
            ],
            { withAgent: false },
          );
          for (const c of chains)
            writer.add({ ...c, state: c.ok ? "intact" : "BROKEN", brokenAt: c.brokenAt || "" });
          writer.end();
          return chains.every((c) => c.ok) ? EXIT_FOUND : EXIT_NOTHING;
        }),
      ),
    );
}
