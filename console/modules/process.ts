import type { Command } from "commander";
import type { ProcessParams, ProcessResult } from "../../proto/api.js";
import { addActionFlags, collect, handle, instantOf, type SweepFlags, uint32 } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet process`: what runs across the fleet (its filters also choose the
// processes `dragnet memory` searches).

const formatter: ModuleFormatter<ProcessResult> = {
  columns: [
    { key: "pid", header: "pid" },
    { key: "ppid", header: "ppid" },
    { key: "user", header: "user" },
    { key: "name", header: "name" },
    { key: "exe", header: "exe" },
    { key: "exeSha256", header: "exe sha256" },
    { key: "started", header: "started" },
    { key: "cmdline", header: "cmdline" },
  ],
  rows(result) {
    return result.processes.map((p) => ({
      pid: p.pid,
      ppid: p.ppid,
      user: p.user,
      uid: p.uid,
      name: p.name,
      exe: p.exeDeleted ? `${p.exe} (deleted)` : p.exe,
      exeDeleted: p.exeDeleted,
      ...(p.exeSha256 ? { exeSha256: p.exeSha256 } : {}),
      started: isoTime(p.startedAtMs),
      rssBytes: p.rssBytes,
      state: p.state,
      cmdline: p.cmdline,
    }));
  },
};

export interface ProcessFlags extends SweepFlags {
  name?: string;
  cmdline?: string;
  user?: string;
  pid?: number;
  ppid?: number;
  excludePid?: number[];
  exe?: string;
  exeSha256?: string[];
  hashExe?: boolean;
  deletedExe?: boolean;
  startedAfter?: string;
  startedBefore?: string;
  listening?: boolean;
}

/** The process filters, shared by `dragnet process` and `dragnet memory`. */
export function addProcessFilters(cmd: Command): Command {
  return cmd
    .option(
      "--name <regex>",
      "regex on the process name (Linux: 15 characters, from the executable's file name)",
    )
    .option("--cmdline <regex>", "regex on the command line")
    .option("--user <name|uid>", "the effective user")
    .option("--pid <n>", "this process id", uint32("--pid"))
    .option("--ppid <n>", "children of this process id", uint32("--ppid"))
    .option("--exe <regex>", "regex on the executable's path")
    .option("--exe-sha256 <hex>", "the executable has this SHA-256 (repeatable: any of them)", collect)
    .option("--hash-exe", "report each executable's SHA-256")
    .option("--deleted-exe", "only processes whose executable was deleted after start (Linux only)")
    .option("--started-after <time>", "started after an ISO time, or a duration ago (2h)")
    .option("--started-before <time>", "started before an ISO time, or a duration ago")
    .option("--listening", "only processes owning a listening TCP or bound UDP socket (Linux only)")
    .option(
      "--exclude-pid <n>",
      "leave this process out (repeatable): e.g. your own shell, whose memory holds what you typed",
      (v: string, prev: number[] = []) => [...prev, uint32("--exclude-pid")(v)],
    );
}

export function processParamsOf(flags: ProcessFlags): ProcessParams {
  const params: ProcessParams = {
    name: flags.name ?? "",
    cmdline: flags.cmdline ?? "",
    user: flags.user ?? "",
    pid: flags.pid,
    ppid: flags.ppid,
    exe: flags.exe ?? "",
    exeSha256: flags.exeSha256 ?? [],
    hashExe: flags.hashExe ?? false,
    deletedExe: flags.deletedExe ?? false,
    startedAfterMs: instantOf("--started-after", flags.startedAfter),
    startedBeforeMs: instantOf("--started-before", flags.startedBefore),
    listening: flags.listening ?? false,
    excludePids: flags.excludePid ?? [],
  };
  return params;
}

function register(program: Command, send: SendAction): void {
  const cmd = addProcessFilters(
    program
      .command("process")
      .description("list processes on the targeted agents (filters combine with AND)"),
  );
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet process -t all --deleted-exe --hash-exe          # running from a deleted file
  dragnet process -t 'os == "linux"' --name '^(nc|ncat|socat)$' --listening
  dragnet process -t all --user www-data --cmdline 'curl|wget' --started-after 2h`,
  );
  cmd.action(
    handle(async (flags: ProcessFlags, command: Command) => {
      const params = processParamsOf(flags);
      return send(command, flags, nameWith("process", params), [
        { module: { $case: "process", value: params } },
      ]);
    }),
  );
}

export const processConsole = defineConsoleModule({
  name: "process",
  commands: ["process"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
