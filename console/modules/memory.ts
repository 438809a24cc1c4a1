import type { Command } from "commander";
import { type MemoryParams, type MemoryResult, type Operation, ProcessParams } from "../../proto/api.js";
import { addActionFlags, handle, nonNegativeInt, uint32 } from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";
import { addProcessFilters, type ProcessFlags, processParamsOf } from "./process.js";

// `dragnet memory`: search the memory of the processes the process filters select.

const formatter: ModuleFormatter<MemoryResult> = {
  columns: [
    { key: "pid", header: "pid" },
    { key: "process", header: "process" },
    { key: "address", header: "address" },
    { key: "region", header: "mapping" },
    { key: "context", header: "context" },
  ],
  rows(result) {
    return result.matches.map((m) => ({
      pid: m.pid,
      process: m.process,
      address: `0x${m.address.toString(16)}`,
      region: m.region,
      context: m.context,
    }));
  },
};

interface MemoryFlags extends ProcessFlags {
  string?: string;
  hex?: string;
  regex?: string;
  maxBytes?: number;
  maxMatches?: number;
}

function register(program: Command, send: SendAction): void {
  const cmd = addProcessFilters(
    program
      .command("memory")
      .description(
        "search the memory of the processes the filters select (Linux; root for other users' processes)",
      ),
  )
    .option("--string <text>", "a literal, as UTF-8 bytes")
    .option("--hex <bytes>", "bytes as hex, e.g. 4d5a9000")
    .option("--regex <regex>", "a regex over the bytes read as Latin-1")
    .option(
      "--max-bytes <n>",
      "stop after reading this many bytes per agent (default 1 GiB)",
      nonNegativeInt("--max-bytes"),
    )
    .option(
      "--max-matches <n>",
      "stop after this many matches per agent (default 100)",
      uint32("--max-matches"),
    );
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet memory -t all --name '^(bash|sh)$' --string 'curl -s http://203.0.113.7'
  dragnet memory -t 'hostname == "web-3"' --pid 4242 --regex 'AKIA[0-9A-Z]{16}'`,
  );
  cmd.action(
    handle(async (flags: MemoryFlags, command: Command) => {
      const params: MemoryParams = {
        processes: processParamsOf(flags),
        string: flags.string ?? "",
        hex: flags.hex ?? "",
        regex: flags.regex ?? "",
        maxBytes: flags.maxBytes,
        maxMatches: flags.maxMatches,
      };
      return send(command, flags, nameWith("memory", params), [
        { module: { $case: "memory", value: params } },
      ]);
    }),
  );
}

const MIG_SEARCH_KEYS = new Set(["description", "names", "libraries", "bytes", "contents", "options"]);
const MIG_OPTION_KEYS = new Set(["offset", "maxlength", "logfailures", "matchall"]);

/**
 * MIG's memory searches as Dragnet operations. MIG's `names` are regexes on
 * the executable's path (Dragnet's --exe). Without `matchall` a process
 * matches when any check hits: each content regex and byte string becomes
 * its own memory operation, and names given with them a process operation of
 * their own. With `matchall` the names narrow the one pattern's search.
 * Libraries and offsets have no Dragnet equivalent and are refused.
 */
function memoryFromMig(parameters: unknown, notes: Notes): Operation[] {
  const searches = (parameters as { searches?: unknown } | null)?.searches;
  if (typeof searches !== "object" || searches === null || Array.isArray(searches)) {
    throw new SearchFormatError('memory parameters have no "searches" object');
  }
  const ops: Operation[] = [];
  for (const [label, raw] of Object.entries(searches as Record<string, unknown>)) {
    const fail = (m: string): never => {
      throw new SearchFormatError(`memory search "${label}": ${m}`);
    };
    if (typeof raw !== "object" || raw === null) fail("must be an object");
    const s = raw as Record<string, unknown>;
    const unknown = Object.keys(s).filter((k) => !MIG_SEARCH_KEYS.has(k));
    if (unknown.length) fail(`unknown ${unknown.join(", ")}`);
    const list = (key: string): string[] => {
      const v = s[key] ?? [];
      if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
        fail(`"${key}" must be a list of strings`);
      return v as string[];
    };
    const options = (s.options ?? {}) as Record<string, unknown>;
    const unknownOptions = Object.keys(options).filter((k) => !MIG_OPTION_KEYS.has(k));
    if (unknownOptions.length) fail(`unknown option ${unknownOptions.join(", ")}`);
    if (list("libraries").length)
      fail("libraries have no Dragnet equivalent (loaded libraries are not searched)");
    if (options.offset)
      fail("offset has no Dragnet equivalent (memory is searched from each region's start)");
    const maxBytes =
      typeof options.maxlength === "number" && options.maxlength > 0 ? options.maxlength : undefined;
    if (maxBytes !== undefined)
      notes.push(`memory search "${label}": maxlength becomes a budget per agent, not per process`);
    const names = list("names");
    const patterns: Array<{ hex: string } | { regex: string }> = [
      ...list("bytes").map((hex) => ({ hex })),
      ...list("contents").map((regex) => ({ regex })),
    ];
    if (names.length === 0 && patterns.length === 0) fail("has no check");
    const anyName = names.length ? names.map((n) => `(?:${n})`).join("|") : "";
    const matchAll = options.matchall === true;
    if (matchAll && names.length > 1) fail("matchall with several names: Dragnet takes one executable regex");
    if (matchAll && patterns.length > 1) {
      fail("matchall with several byte strings or contents: Dragnet searches one pattern per operation");
    }
    const memory = (needle: { hex: string } | { regex: string }, exe: string): Operation => ({
      module: {
        $case: "memory",
        value: {
          processes: ProcessParams.fromPartial({ exe }),
          string: "",
          hex: "hex" in needle ? needle.hex : "",
          regex: "regex" in needle ? needle.regex : "",
          maxBytes,
          maxMatches: undefined,
        },
      },
    });
    if (matchAll || patterns.length === 0) {
      if (patterns[0]) ops.push(memory(patterns[0], anyName));
      else ops.push({ module: { $case: "process", value: ProcessParams.fromPartial({ exe: anyName }) } });
      continue;
    }
    for (const p of patterns) ops.push(memory(p, ""));
    if (names.length) {
      ops.push({ module: { $case: "process", value: ProcessParams.fromPartial({ exe: anyName }) } });
      notes.push(
        `memory search "${label}": without matchall its names match on their own, as a process search`,
      );
    }
  }
  if (ops.length === 0) throw new SearchFormatError("memory has no search");
  return ops;
}

export const memoryConsole = defineConsoleModule({
  name: "memory",
  commands: ["memory"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "memory", convert: memoryFromMig },
});
