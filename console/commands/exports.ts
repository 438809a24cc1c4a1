import type { Command } from "commander";
import { globalsOf, handle, withApi } from "../cli-kit.js";
import { formatOf, isoTime, RowWriter } from "../output/rows.js";

// `dragnet exports status`: per export sink (coordinator config `exports`),
// how far behind it is, when the receiver last accepted, and its last error.

export function registerExportsCommand(program: Command): void {
  program
    .command("exports")
    .description("the coordinator's export sinks (syslog, HTTP, file)")
    .command("status")
    .description("per sink: records not yet delivered (lag), last success, last error")
    .action(
      handle(async (_flags: unknown, command: Command) =>
        withApi(command, async (api) => {
          const sinks = await api.exportStatus();
          const writer = new RowWriter(
            formatOf(globalsOf(command)),
            [
              { key: "name", header: "sink" },
              { key: "type", header: "type" },
              { key: "carries", header: "carries" },
              { key: "lag", header: "lag" },
              { key: "delivered", header: "delivered" },
              { key: "skipped", header: "set aside" },
              { key: "lastSuccess", header: "last success" },
              { key: "lastError", header: "last error" },
            ],
            { withAgent: false },
          );
          for (const s of sinks) {
            writer.add({
              name: s.name,
              type: s.type,
              carries: s.carries.join(","),
              lag: s.lag,
              delivered: s.delivered,
              skipped: s.skipped,
              lastSuccess: s.lastSuccessMs ? isoTime(s.lastSuccessMs) : "never",
              lastError: s.lastErrorMs
                ? `${isoTime(s.lastErrorMs)} ${s.lastError}${s.retrying ? " (retrying)" : ""}`
                : "",
            });
          }
          writer.end();
          if (sinks.length === 0 && formatOf(globalsOf(command)) === "table") {
            process.stdout.write("no export sinks: the coordinator's config has no exports\n");
          }
          return 0;
        }),
      ),
    );
}
