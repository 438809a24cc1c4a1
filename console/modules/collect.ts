import type { Command } from "commander";
import type { CollectedFiles } from "../../proto/api.js";
import { addActionFlags, handle, nonNegativeInt, type SweepFlags, uint32 } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet collect`: files from the agents as evidence, SHA-256 checked at
// both ends (two signatures by default); `dragnet evidence list|get` reads
// what the coordinator keeps.

const formatter: ModuleFormatter<CollectedFiles> = {
  columns: [
    { key: "path", header: "path" },
    { key: "size", header: "size" },
    { key: "sha256", header: "sha256" },
    { key: "evidenceId", header: "evidence" },
    { key: "skipped", header: "left out" },
  ],
  // A row per file collected, and one per file left out with the reason.
  rows: (r) => [
    ...r.files.map((f) => ({ ...f })),
    ...r.skipped.map((s) => {
      const at = s.indexOf(": ");
      return { path: s.slice(0, at), skipped: s.slice(at + 2) };
    }),
  ],
};

interface CollectFlags extends SweepFlags {
  path: string;
  maxBytes?: number;
  maxFiles?: number;
  name?: string;
  followSymlinks?: boolean;
}

function register(program: Command, send: SendAction): void {
  const collect = program
    .command("collect")
    .description("upload a file from each targeted agent as evidence (SHA-256 checked; needs two signatures)")
    .requiredOption("--path <path>", "the file, or with --max-files a directory (absolute path)")
    .option(
      "--max-bytes <n>",
      "refuse files larger than this; for a directory, all its files together (default 1 GiB)",
      nonNegativeInt("--max-bytes"),
    )
    .option(
      "--max-files <n>",
      "collect the files under a directory, at most this many (each its own evidence item)",
      uint32("--max-files"),
    )
    .option("--name <regex>", "with --max-files: only files whose name matches")
    .option("--follow-symlinks", "collect what a symlink points to (by default a symlink is refused)");
  addActionFlags(collect);
  collect.addHelpText(
    "after",
    `
Example:
  dragnet collect -t 'hostname == "web-7"' --path /var/log/auth.log --incident IR-2026-11
  dragnet collect -t 'hostname == "web-7"' --path /var/log --max-files 50 --name '^auth.log' --max-bytes 500000000
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
              maxFiles: flags.maxFiles,
              name: flags.name ?? "",
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
