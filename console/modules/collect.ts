import type { Command } from "commander";
import type { CollectResult } from "../../proto/api.js";
import { addActionFlags, handle, nonNegativeInt, type SweepFlags } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet collect`: files from the agents as evidence, SHA-256 checked at
// both ends (two signatures by default); `dragnet evidence list|get` reads
// what the coordinator keeps.

const formatter: ModuleFormatter<CollectResult> = {
  columns: [
    { key: "path", header: "path" },
    { key: "size", header: "size" },
    { key: "sha256", header: "sha256" },
    { key: "evidenceId", header: "evidence" },
  ],
  rows: (r) => [{ ...r }],
};

interface CollectFlags extends SweepFlags {
  path: string;
  maxBytes?: number;
  followSymlinks?: boolean;
}

function register(program: Command, send: SendAction): void {
  const collect = program
    .command("collect")
    .description("upload a file from each targeted agent as evidence (SHA-256 checked; needs two signatures)")
    .requiredOption("--path <path>", "the file (absolute path)")
    .option("--max-bytes <n>", "refuse files larger than this (default 1 GiB)", nonNegativeInt("--max-bytes"))
    .option("--follow-symlinks", "collect what a symlink points to (by default a symlink is refused)");
  addActionFlags(collect);
  collect.addHelpText(
    "after",
    `
Example:
  dragnet collect -t 'hostname == "web-7"' --path /var/log/auth.log --incident IR-2026-11
  dragnet evidence list && dragnet evidence get ID --out auth.log`,
  );
  collect.action(
    handle(async (flags: CollectFlags, command: Command) =>
      send(command, flags, `collect ${flags.path}`, [
        {
          module: {
            $case: "collect",
            value: {
              path: flags.path,
              maxBytes: flags.maxBytes,
              followSymlinks: flags.followSymlinks ?? false,
            },
          },
        },
      ]),
    ),
  );
}

export const collectConsole = defineConsoleModule({
  name: "collect",
  commands: ["collect"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
