import { createRequire } from "node:module";
import { basename } from "node:path";
import type { Command } from "commander";
import {
  describeYaraError,
  MAX_YARA_RULES_BYTES as MAX_RULES_BYTES,
  YARA_ADDON,
} from "../../agent/modules/checks.js";
import type { Operation, YaraParams, YaraResult, YaraRules } from "../../proto/api.js";
import {
  addActionFlags,
  collect,
  handle,
  nonNegativeInt,
  paramsError,
  readSmallFile,
  type SweepFlags,
  uint32,
} from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";
import { processParamsOf } from "./process.js";

// `dragnet yara`: files or processes' memory scanned with YARA rules. The
// rules' text goes inside the signed action; they are compiled here first
// (YARA-X, the engine the agents run), so a rule that does not compile is
// refused with its file and line before anything is signed.

const formatter: ModuleFormatter<YaraResult> = {
  columns: [
    { key: "path", header: "path" },
    { key: "pid", header: "pid", show: (v) => (v ? String(v) : "") },
    { key: "rule", header: "rule" },
    { key: "tags", header: "tags", show: (v) => (v as string[]).join(" ") },
    {
      key: "strings",
      header: "strings",
      show: (v, row) =>
        (v as { identifier: string; offset: number; data: string }[])
          .map((s) => `${s.identifier}@0x${s.offset.toString(16)} ${JSON.stringify(s.data)}`)
          .join(" ") + (row.stringsOmitted ? ` (+${row.stringsOmitted} more)` : ""),
    },
  ],
  rows: (r) =>
    r.matches.map((m) => ({
      path: m.path,
      ...(m.pid ? { pid: m.pid, process: m.process, exe: m.exe } : {}),
      rule: m.rule,
      namespace: m.namespace,
      tags: m.tags,
      meta: m.meta,
      strings: m.strings,
      stringsOmitted: m.stringsOmitted,
      rulesSha256: r.rulesSha256,
    })),
};

interface YaraFlags extends SweepFlags {
  rules: string[];
  path?: string[];
  name?: string;
  maxdepth?: number;
  maxFileBytes?: number;
  pid?: number;
  process?: string;
  cmdline?: string;
  user?: string;
  exe?: string;
  excludePid?: number[];
  maxBytes?: number;
  maxMatches?: number;
  maxStrings?: number;
}

interface Validator {
  validate(source: string): { errors: { code: string; message: string; line?: number }[] };
}

/** Compiles each rule file with YARA-X, as the agents will: refused with file, line and the compiler's words. */
export function compileCheck(rules: YaraRules[]): void {
  let engine: Validator;
  try {
    // The addon itself (the package of @litko/yara-x's binaries for this platform).
    const addon = { exports: {} as Validator };
    process.dlopen(addon, createRequire(import.meta.url).resolve(YARA_ADDON));
    engine = addon.exports;
  } catch (err) {
    paramsError(`the YARA engine (${YARA_ADDON}) cannot be loaded here: ${(err as Error).message}`);
  }
  for (const r of rules) {
    const { errors } = engine.validate(r.text);
    if (errors.length) {
      paramsError(describeYaraError(r.name, errors[0]!));
    }
  }
}

function rulesOf(files: string[]): YaraRules[] {
  const rules: YaraRules[] = [];
  for (const file of files) {
    try {
      rules.push({ name: basename(file), text: readSmallFile(file) });
    } catch (err) {
      paramsError(`cannot read rules from ${file}: ${(err as Error).message}`);
    }
  }
  const size = rules.reduce((n, r) => n + Buffer.byteLength(r.text), 0);
  if (size > MAX_RULES_BYTES)
    paramsError(`the rules are ${size} bytes, over the limit of ${MAX_RULES_BYTES}`);
  return rules;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("yara")
    .description("scan files, or processes' memory, with YARA rules (YARA-X; the rules travel signed)")
    .requiredOption("--rules <file>", "a YARA rule file (repeatable)", collect)
    .option(
      "--path <path>",
      "scan the files under this path (repeatable; symlinks are not followed)",
      collect,
    )
    .option("--name <regex>", "only files whose base name matches")
    .option("--maxdepth <n>", "levels below each path (default 64)", nonNegativeInt("--maxdepth"))
    .option(
      "--max-file-bytes <n>",
      "files larger than this are counted, not scanned (default 64 MiB)",
      nonNegativeInt("--max-file-bytes"),
    )
    .option("--pid <n>", "scan this process's memory", uint32("--pid"))
    .option("--process <regex>", "scan the memory of processes whose name matches")
    .option("--cmdline <regex>", "… whose command line matches")
    .option("--user <name|uid>", "… of this effective user")
    .option("--exe <regex>", "… whose executable's path matches")
    .option("--exclude-pid <n>", "leave this process out (repeatable)", (v: string, prev: number[] = []) => [
      ...prev,
      uint32("--exclude-pid")(v),
    ])
    .option(
      "--max-bytes <n>",
      "memory: stop after reading this many bytes (default 1 GiB)",
      nonNegativeInt("--max-bytes"),
    )
    .option(
      "--max-matches <n>",
      "stop after this many matches per agent (default 1000)",
      uint32("--max-matches"),
    )
    .option("--max-strings <n>", "matching strings shown per match (default 16)", uint32("--max-strings"));
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet yara -t all --rules webshells.yar --path /var/www --name '[.]php$'
  dragnet yara -t 'hostname == "web-7"' --rules cobalt.yar --process '^(nginx|php-fpm)'   # two signatures`,
  );
  cmd.action(
    handle(async (flags: YaraFlags, command: Command) => {
      const memory = [flags.pid, flags.process, flags.cmdline, flags.user, flags.exe].some(
        (v) => v !== undefined,
      );
      if (!flags.path && !memory)
        paramsError("give --path to scan files, or --pid/--process/--cmdline/--user/--exe to scan memory");
      if (flags.path && memory)
        paramsError("scan files (--path) or memory (process filters), not both at once");
      const rules = rulesOf(flags.rules);
      compileCheck(rules);
      // The process module's own filters, under names that do not clash with the file scope's.
      const processes = memory ? processParamsOf({ ...flags, name: flags.process }) : undefined;
      const params: YaraParams = {
        rules,
        paths: flags.path ?? [],
        name: flags.name ?? "",
        maxDepth: flags.maxdepth,
        maxFileBytes: flags.maxFileBytes,
        processes,
        maxBytes: flags.maxBytes,
        maxMatches: flags.maxMatches,
        maxStrings: flags.maxStrings,
      };
      const what = nameWith("yara", {
        rules: rules.map((r) => r.name),
        paths: params.paths,
        process: flags.process,
        pid: flags.pid,
      });
      return send(command, flags, what, [{ module: { $case: "yara", value: params } }]);
    }),
  );
}

/** MIG's filesearch: the file module's command line ("-path /etc -name '^x$' -maxdepth 3"), as words. */
function migWords(line: string): string[] {
  return (line.match(/'[^']*'|"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^(['"])(.*)\1$/, "$2"));
}

/** MIG's yara parameters: {"yara": rules text, "filesearch": "-path … -name … -maxdepth …"}. */
function fromMig(parameters: unknown, notes: Notes): Operation[] {
  const p = parameters as { yara?: unknown; filesearch?: unknown } | null;
  if (typeof p !== "object" || p === null || typeof p.yara !== "string" || !p.yara.trim())
    throw new SearchFormatError('yara parameters have no "yara" rules');
  for (const key of Object.keys(p))
    if (key !== "yara" && key !== "filesearch")
      throw new SearchFormatError(`yara parameter "${key}" is not MIG's`);
  if (typeof p.filesearch !== "string" || !p.filesearch.trim())
    throw new SearchFormatError('yara parameters have no "filesearch": MIG scans nothing without one');
  const words = migWords(p.filesearch);
  const paths: string[] = [];
  let name = "";
  let maxDepth: number | undefined;
  for (let i = 0; i < words.length; i++) {
    const flag = words[i]!;
    const value = words[i + 1];
    if (value === undefined) throw new SearchFormatError(`yara filesearch: ${flag} has no value`);
    i++;
    if (flag === "-path") paths.push(value);
    else if (flag === "-name") {
      if (name) throw new SearchFormatError("yara filesearch: more than one -name cannot be carried over");
      name = value;
    } else if (flag === "-maxdepth") {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0)
        throw new SearchFormatError(`yara filesearch: -maxdepth ${value} is not a number`);
      // MIG counts the path itself as depth 1, Dragnet as 0; MIG's 0 is "no limit".
      maxDepth = n === 0 ? undefined : n - 1;
    } else {
      throw new SearchFormatError(
        `yara filesearch ${flag} has no Dragnet equivalent: a yara scan selects files by -path, -name and -maxdepth only`,
      );
    }
  }
  if (!paths.length) throw new SearchFormatError("yara filesearch has no -path");
  // Refused here, before anything is signed, as `dragnet yara` refuses it.
  compileCheck([{ name: "mig.yar", text: p.yara }]);
  notes.push(`yara: ${paths.length} path${paths.length === 1 ? "" : "s"} scanned with MIG's rules`);
  return [
    {
      module: {
        $case: "yara",
        value: {
          rules: [{ name: "mig.yar", text: p.yara }],
          paths,
          name,
          maxDepth,
          processes: undefined,
        },
      },
    },
  ];
}

export const yaraConsole = defineConsoleModule({
  name: "yara",
  commands: ["yara"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "yara", convert: fromMig },
});
