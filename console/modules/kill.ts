import type { Command } from "commander";
import type { KillResult } from "../../proto/api.js";
import { addActionFlags, handle, type SweepFlags, uint32 } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet kill`: end one process, only if it is still the one meant (two signatures by default).

const formatter: ModuleFormatter<KillResult> = {
  columns: [
    { key: "pid", header: "pid" },
    { key: "name", header: "name" },
    { key: "exe", header: "exe" },
    { key: "exeSha256", header: "exe sha256" },
    { key: "signal", header: "signal" },
    { key: "exited", header: "exited" },
  ],
  rows: (k) => [{ ...k.process, signal: k.signal, exited: k.exited ? "yes" : "no" }],
};

interface KillFlags extends SweepFlags {
  pid: number;
  expectName?: string;
  expectExeSha256?: string;
  signal?: string;
}

function register(program: Command, send: SendAction): void {
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
      send(command, flags, `kill ${flags.pid}`, [
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

export const killConsole = defineConsoleModule({
  name: "kill",
  commands: ["kill"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
