import type { Command } from "commander";
import type { IsolateResult } from "../../proto/api.js";
import { addActionFlags, handle, type SweepFlags } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";
import { ISOLATION_COLUMNS, isolationRow } from "./isolate.js";

// `dragnet unisolate`: lift isolation (the agents' own rules only).

const formatter: ModuleFormatter<IsolateResult> = {
  columns: ISOLATION_COLUMNS,
  rows: (r) => [isolationRow(r)],
};

function register(program: Command, send: SendAction): void {
  const unisolate = program
    .command("unisolate")
    .description(
      "lift the agents' isolation: their own rules only, every other firewall rule stays (whether a host is isolated: dragnet agents -t isolated)",
    );
  addActionFlags(unisolate);
  unisolate.action(
    handle(async (flags: SweepFlags, command: Command) =>
      send(command, flags, "unisolate", [{ module: { $case: "unisolate", value: { statusOnly: false } } }]),
    ),
  );
}

export const unisolateConsole = defineConsoleModule({
  name: "unisolate",
  commands: ["unisolate"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
