import type { Command } from "commander";
import type { QuarantineResult } from "../../proto/api.js";
import { addActionFlags, handle, type SweepFlags } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet quarantine`: take files out of use into each agent's vault, list
// the vault, restore from it (two signatures by default).

const formatter: ModuleFormatter<QuarantineResult> = {
  columns: [
    { key: "id", header: "vault id" },
    { key: "originalPath", header: "path" },
    { key: "mode", header: "mode" },
    { key: "sha256", header: "sha256" },
    { key: "quarantinedAt", header: "quarantined" },
    { key: "restored", header: "restored" },
  ],
  rows: (r) =>
    r.files.map((f) => ({
      ...f,
      quarantinedAt: isoTime(f.quarantinedAtMs),
      restored: f.restored ? "yes" : "",
    })),
};

function register(program: Command, send: SendAction): void {
  // A parent with no flags of its own: each subcommand takes its own -t and action flags.
  const quarantine = program
    .command("quarantine")
    .description("each agent's vault: add a file to it, list it, restore from it");
  const add = quarantine
    .command("add")
    .description(
      "move a file into each agent's vault (no execute bits, origin and SHA-256 recorded; needs two signatures)",
    )
    .requiredOption("--path <path>", "the file to quarantine");
  addActionFlags(add);
  add.action(
    handle(async (flags: SweepFlags & { path: string }, command: Command) =>
      send(command, flags, `quarantine ${flags.path}`, [
        { module: { $case: "quarantine", value: { mode: "quarantine", path: flags.path, id: "" } } },
      ]),
    ),
  );
  const list = quarantine
    .command("list")
    .description("the files in each agent's vault (read-only: one signature, as an investigation)");
  addActionFlags(list);
  list.action(
    handle(async (flags: SweepFlags, command: Command) =>
      send(command, flags, "quarantine list", [
        { module: { $case: "quarantine", value: { mode: "list", path: "", id: "" } } },
      ]),
    ),
  );
  const restore = quarantine
    .command("restore")
    .description("put a quarantined file back where it was, as it was (hash checked; needs two signatures)")
    .requiredOption("--id <id>", "the vault id (quarantine list shows it)");
  addActionFlags(restore);
  restore.action(
    handle(async (flags: SweepFlags & { id: string }, command: Command) =>
      send(command, flags, `quarantine restore ${flags.id}`, [
        { module: { $case: "quarantine", value: { mode: "restore", path: "", id: flags.id } } },
      ]),
    ),
  );
}

export const quarantineConsole = defineConsoleModule({
  name: "quarantine",
  commands: ["quarantine add", "quarantine list", "quarantine restore"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
