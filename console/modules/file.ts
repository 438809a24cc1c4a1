import type { Command } from "commander";
import { HASH_FIELD, HASH_NAMES } from "../../agent/modules/checks.js";
import type { FileMatch, FileResult, FileSearch } from "../../proto/api.js";
import {
  addActionFlags,
  collect,
  handle,
  nonNegativeInt,
  paramsError,
  readSmallFile,
  type SweepFlags,
} from "../cli-kit.js";
import { SearchFormatError, searchesFromMig, searchFromMig } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime, printable } from "../output/rows.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet file`: find files across the fleet by name, content, metadata and hash.

const formatter: ModuleFormatter<FileResult> = {
  columns: [
    { key: "path", header: "path" },
    { key: "size", header: "size" },
    { key: "mode", header: "mode" },
    { key: "mtime", header: "mtime" },
    { key: "sha256", header: "sha256" },
  ],
  rows(result) {
    return result.matches.map((m: FileMatch) => ({
      search: m.search,
      path: m.path,
      size: m.size,
      mode: m.mode,
      uid: m.uid,
      gid: m.gid,
      mtime: isoTime(m.mtimeMs),
      ...(m.sha256 ? { sha256: m.sha256 } : {}),
      ...Object.fromEntries(
        HASH_NAMES.filter((h) => h !== "sha256" && m[HASH_FIELD[h]]).map((h) => [h, m[HASH_FIELD[h]]]),
      ),
      ...(m.target ? { target: m.target } : {}),
    }));
  },
};

interface FileFlags extends SweepFlags {
  path?: string[];
  searches?: string;
  name?: string[];
  content?: string[];
  size?: string[];
  mode?: string[];
  mtime?: string[];
  md5?: string[];
  sha1?: string[];
  sha2?: string[];
  sha256?: string[];
  sha384?: string[];
  sha512?: string[];
  sha3?: string[];
  sha3_224?: string[];
  sha3_256?: string[];
  sha3_384?: string[];
  sha3_512?: string[];
  maxdepth?: number;
  matchlimit?: number;
  maxerrors?: number;
  matchany?: boolean;
  macroal?: boolean;
  mismatch?: string[];
  decompress?: boolean;
  hash?: string;
}

const HASH_FLAGS = [
  "md5",
  "sha1",
  "sha2",
  "sha256",
  "sha384",
  "sha512",
  "sha3",
  "sha3_224",
  "sha3_256",
  "sha3_384",
  "sha3_512",
] as const;

/** The one search the flags describe, in MIG's form (so it is checked as an imported one is). */
function searchFromFlags(flags: FileFlags): FileSearch {
  const criteria: Record<string, unknown> = { paths: flags.path ?? [] };
  const lists = { names: flags.name, contents: flags.content, sizes: flags.size, modes: flags.mode };
  for (const [key, value] of Object.entries(lists)) if (value) criteria[key] = value;
  if (flags.mtime) criteria.mtimes = flags.mtime;
  for (const h of HASH_FLAGS) if (flags[h]) criteria[h] = flags[h];
  const options: Record<string, unknown> = {
    maxdepth: flags.maxdepth,
    matchlimit: flags.matchlimit,
    maxerrors: flags.maxerrors,
    matchany: flags.matchany,
    macroal: flags.macroal,
    mismatch: flags.mismatch,
    decompress: flags.decompress,
    returnhashes: flags.hash
      ?.split(",")
      .map((h) => h.trim())
      .filter(Boolean),
  };
  for (const k of Object.keys(options)) if (options[k] === undefined) delete options[k];
  return searchFromMig("s1", { ...criteria, options }, "dragnet");
}

/** The searches of one `dragnet file` run: from --searches FILE, or the one the flags describe. */
function searchesOf(flags: FileFlags): FileSearch[] {
  const criteria = [
    ...HASH_FLAGS,
    "name",
    "content",
    "size",
    "mode",
    "mtime",
    "maxdepth",
    "matchlimit",
    "maxerrors",
    "matchany",
    "macroal",
    "mismatch",
    "decompress",
    "hash",
  ].filter((k) => flags[k as keyof FileFlags] !== undefined);
  if (flags.searches) {
    if (flags.path || criteria.length) {
      paramsError(
        `--searches FILE holds whole searches; it cannot be combined with --path or --${criteria[0] ?? "path"}`,
      );
    }
    let raw: unknown;
    try {
      raw = JSON.parse(readSmallFile(flags.searches));
    } catch (err) {
      paramsError(`cannot read searches from ${flags.searches}: ${(err as Error).message}`);
    }
    // Either {"s1": {...}} or MIG's file parameters {"searches": {"s1": {...}}}.
    const named = (raw as { searches?: unknown })?.searches ?? raw;
    try {
      const notes: string[] = [];
      const searches = searchesFromMig(named, notes);
      for (const note of notes) process.stderr.write(`dragnet: note: ${printable(note)}\n`);
      return searches;
    } catch (err) {
      paramsError(`${flags.searches}: ${(err as Error).message}`);
    }
  }
  if (!flags.path) paramsError("give --path (repeatable) or --searches FILE; see dragnet file help");
  try {
    return [searchFromFlags(flags)];
  } catch (err) {
    paramsError((err as Error).message);
  }
}

const GUIDE = `dragnet file: find files across the fleet

A search walks each --path (no globbing; symlinks to files are followed and
report their target, symlinked directories are not descended) and reports
the files every criterion matches (--matchany: any one). Criteria:
  --name RE      regex on the base name            --content RE  regex on each line
  --size S       N, <N, >N bytes; k/m/g/t suffix   --mode RE     regex on "-rwxr-xr-x"
  --mtime T      <N modified within, >N older than; N in d, h or m (e.g. <2d)
  --md5/--sha1/--sha256/--sha384/--sha512/--sha3_224/--sha3_256/--sha3_384/--sha3_512 H
                 digests; per algorithm the list is a set (any of them)
  --sha2 H / --sha3 H   MIG's lists: the digest's length picks the variant
A leading ! inverts a regex (for --content: no line matches). --mismatch KIND
inverts every check of a kind (name, content, size, mode, mtime, md5, sha256…).
--macroal: a content regex must match every line. --decompress: gzip files
are searched decompressed. Defaults, per agent: --maxdepth 64 (the path is
depth 0), --matchlimit 1000 (per search), --maxerrors 20.

Examples from real investigations:
  # authorized_keys holding a key we do not know: some line is not one of ours
  dragnet file -t all --path /root --path /home --name '^authorized_keys2?$' --maxdepth 3 \\
    --content '^(#.*|\\s*|ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnown1 .*)$' --macroal --mismatch content

  # a backdoored sshd (Backdoor:Linux/SSHDoor.A), by hash
  dragnet file -t 'os == "linux"' --path /usr/sbin --name '^sshd$' \\
    --sha256 ebfd9354ed83635ed38bd117b375903f9984a18780ef86dbf7a642fc6584271c

  # what changed under /etc in the last two days, with hashes to compare later
  dragnet file -t 'tags.env == "prod"' --path /etc --mtime '<2d' --hash sha256

  # cron entries that pipe a download into a shell
  dragnet file -t all --path /etc/crontab --path /etc/cron.d --path /var/spool/cron \\
    --content 'curl[^|]*[|]\\s*(ba)?sh'

  # a USB device by vendor and product id (sysfs), e.g. a rogue keyboard
  dragnet file -t all --path /sys/devices --maxdepth 12 --name '^(idVendor|idProduct)$' \\
    --content '^(1a86|7523)$' --matchany

  # rotated logs mentioning an address, gzip ones included
  dragnet file -t all --path /var/log --name '^auth[.]log' --content '203[.]0[.]113[.]7' --decompress

  # several searches in one action, MIG's form: {"s1": {"paths": [...], "names": [...], "options": {...}}}
  dragnet file -t all --searches searches.json
`;

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("file")
    .description(
      "search files on the targeted agents (name, content, size, mode, mtime, hashes); see: dragnet file help",
    )
    .option("--path <path>", "absolute path to search (repeatable; directories are walked)", collect)
    .option("--searches <file>", "JSON file of named searches in MIG's form, instead of --path and criteria")
    .option("--name <regex>", "regex on the file's base name; a leading ! inverts it (repeatable)", collect)
    .option(
      "--content <regex>",
      "regex tried on each line; a leading ! means no line matches (repeatable)",
      collect,
    )
    .option("--size <size>", "N, <N or >N bytes with an optional k/m/g/t suffix (repeatable)", collect)
    .option("--mode <regex>", 'regex on the ls-style mode, e.g. "^-..s" (repeatable)', collect)
    .option(
      "--mtime <age>",
      "<N modified within, >N longer ago; N in d, h or m, e.g. <2d (repeatable)",
      collect,
    )
    .option("--md5 <hex>", "MD5 the file must have (repeatable: any of them)", collect)
    .option("--sha1 <hex>", "SHA-1 the file must have (repeatable: any of them)", collect)
    .option("--sha256 <hex>", "SHA-256 the file must have (repeatable: any of them)", collect)
    .option("--sha384 <hex>", "SHA-384 (repeatable)", collect)
    .option("--sha512 <hex>", "SHA-512 (repeatable)", collect)
    .option("--sha3_224 <hex>", "SHA3-224 (repeatable)", collect)
    .option("--sha3_256 <hex>", "SHA3-256 (repeatable)", collect)
    .option("--sha3_384 <hex>", "SHA3-384 (repeatable)", collect)
    .option("--sha3_512 <hex>", "SHA3-512 (repeatable)", collect)
    .option("--sha2 <hex>", "a SHA-2 digest of any length, as MIG writes them (repeatable)", collect)
    .option("--sha3 <hex>", "a SHA-3 digest of any length, as MIG writes them (repeatable)", collect)
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
    .option("--matchany", "a file matches when any one criterion hits (default: all must)")
    .option("--macroal", "a content regex must match every line of the file")
    .option(
      "--mismatch <kind>",
      "invert every check of a kind: name, content, size, mode, mtime, md5… (repeatable)",
      collect,
    )
    .option("--decompress", "search gzip files decompressed")
    .option("--hash <list>", "hashes to report for each match (md5,sha1,sha256,sha384,sha512,sha3_256…)");
  addActionFlags(cmd, { targetRequired: false });
  cmd.addHelpText(
    "after",
    `
Examples (more: dragnet file help):
  dragnet file -t all --path /etc --name '^passwd$' --hash sha256
  dragnet file -t 'os == "linux"' --path /usr/bin --sha256 <hex> --json
  dragnet file -t 'tags.env == "prod"' --path /etc --mtime '<2d'`,
  );
  cmd
    .command("help")
    .description("how file searches work, with examples from real investigations")
    .action(() => {
      process.stdout.write(GUIDE);
    });
  cmd.action(
    handle(async (flags: FileFlags, command: Command) => {
      if (!flags.target) paramsError("give the agents to search with -t EXPR (e.g. -t all)");
      const searches = searchesOf(flags);
      const what = flags.searches ?? searches.flatMap((s) => s.paths).join(" ");
      return send(command, flags, `file ${what}`, [{ module: { $case: "file", value: { searches } } }]);
    }),
  );
}

export const fileConsole = defineConsoleModule({
  name: "file",
  commands: ["file"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: {
    module: "file",
    convert(parameters, notes) {
      const p = parameters as { searches?: unknown } | null;
      if (typeof p !== "object" || p === null || p.searches === undefined) {
        throw new SearchFormatError('file parameters have no "searches"');
      }
      return [{ module: { $case: "file", value: { searches: searchesFromMig(p.searches, notes) } } }];
    },
  },
});
