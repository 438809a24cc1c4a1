import type { Command } from "commander";
import type { FileMatch, FileResult, FileSearch } from "../../proto/mod.js";
import { buildAction } from "../action-builder.js";
import {
  actionOptionsOf,
  addActionFlags,
  collect,
  globalsOf,
  handle,
  nonNegativeInt,
  type SweepFlags,
} from "../cli-kit.js";
import { openClient } from "../home.js";
import { registerFormatter } from "../output/formatters.js";
import { formatOf, isoTime } from "../output/rows.js";
import { sweep } from "../sweep.js";

// `dragnet file`: find files across the fleet by path, name and hash.

registerFormatter("file", {
  columns: [
    { key: "path", header: "path" },
    { key: "size", header: "size" },
    { key: "mode", header: "mode" },
    { key: "mtime", header: "mtime" },
    { key: "sha256", header: "sha256" },
  ],
  rows(result) {
    return (result as FileResult).matches.map((m: FileMatch) => ({
      search: m.search,
      path: m.path,
      size: m.size,
      mode: m.mode,
      uid: m.uid,
      gid: m.gid,
      mtime: isoTime(m.mtimeMs),
      ...(m.sha256 ? { sha256: m.sha256 } : {}),
      ...(m.target ? { target: m.target } : {}),
    }));
  },
});

interface FileFlags extends SweepFlags {
  path: string[];
  name?: string[];
  sha256?: string[];
  maxdepth?: number;
  matchlimit?: number;
  maxerrors?: number;
  hash?: string;
}

export function searchFromFlags(flags: FileFlags): FileSearch {
  return {
    label: "s1",
    paths: flags.path,
    names: flags.name ?? [],
    sha256: flags.sha256 ?? [],
    options: {
      maxDepth: flags.maxdepth,
      matchLimit: flags.matchlimit,
      maxErrors: flags.maxerrors,
      returnHashes: flags.hash
        ? flags.hash
            .split(",")
            .map((h) => h.trim())
            .filter(Boolean)
        : [],
    },
  };
}

export function registerFileCommand(program: Command): void {
  const cmd = program
    .command("file")
    .description("search files on the targeted agents (by path, name regex, SHA-256)")
    .requiredOption("--path <path>", "absolute path to search (repeatable; directories are walked)", collect)
    .option("--name <regex>", "regex on the file's base name; a leading ! inverts it (repeatable)", collect)
    .option("--sha256 <hex>", "SHA-256 the file must have (repeatable: any of them)", collect)
    .option(
      "--maxdepth <n>",
      "levels below each path to descend (the path itself is depth 0; default 64)",
      nonNegativeInt("--maxdepth"),
    )
    .option(
      "--matchlimit <n>",
      "stop after this many matches per agent (default 1000)",
      nonNegativeInt("--matchlimit"),
    )
    .option(
      "--maxerrors <n>",
      "report at most this many errors per agent (default 20)",
      nonNegativeInt("--maxerrors"),
    )
    .option("--hash <list>", "hashes to report for each match (sha256)");
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet file -t all --path /etc --name '^passwd$' --hash sha256
  dragnet file -t 'os == "linux"' --path /usr/bin --sha256 <hex> --json
  dragnet file -t 'tags.env == "prod"' --path /root/.ssh --path /home --name '^authorized_keys$' --maxdepth 3`,
  );
  cmd.action(
    handle(async (flags: FileFlags, command: Command) => {
      const globals = globalsOf(command);
      const body = buildAction(actionOptionsOf(flags), `file ${flags.path.join(" ")}`, [
        { module: { $case: "file", value: { searches: [searchFromFlags(flags)] } } },
      ]);
      const api = openClient(globals);
      try {
        return await sweep(api, body, {
          format: formatOf(globals),
          modules: ["file"],
          noWait: !flags.wait,
          waitOffline: flags.waitOffline,
          quiet: flags.quiet,
        });
      } finally {
        api.close();
      }
    }),
  );
}
