import type { Command } from "commander";
import type {
  MemoryParams,
  MemoryResult,
  NetstatParams,
  NetstatResult,
  ProcessParams,
  ProcessResult,
} from "../../proto/api.js";
import {
  addActionFlags,
  collect,
  handle,
  instantOf,
  nonNegativeInt,
  type SweepFlags,
  uint32,
} from "../cli-kit.js";
import { registerFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { sendAction } from "../send.js";

// `dragnet process` and `dragnet netstat`: what runs and who talks to whom,
// across the fleet.

registerFormatter("process", {
  columns: [
    { key: "pid", header: "pid" },
    { key: "ppid", header: "ppid" },
    { key: "user", header: "user" },
    { key: "name", header: "name" },
    { key: "exe", header: "exe" },
    { key: "started", header: "started" },
    { key: "cmdline", header: "cmdline" },
  ],
  rows(result) {
    return (result as ProcessResult).processes.map((p) => ({
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
});

const endpoint = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

registerFormatter("netstat", {
  columns: [
    { key: "proto", header: "proto" },
    { key: "state", header: "state" },
    { key: "local", header: "local" },
    { key: "remote", header: "remote" },
    { key: "pid", header: "pid" },
    { key: "process", header: "process" },
    { key: "ip", header: "neighbour" },
    { key: "mac", header: "mac" },
  ],
  rows(result) {
    const r = result as NetstatResult;
    return [
      ...r.sockets.map((s) => ({
        proto: s.proto,
        state: s.state,
        local: endpoint(s.localIp, s.localPort),
        remote: endpoint(s.remoteIp, s.remotePort),
        pid: s.pid || "",
        process: s.process,
        uid: s.uid,
        inode: s.inode,
      })),
      ...r.neighbors.map((n) => ({ proto: "neigh", ip: n.ip, mac: n.mac, device: n.device, state: n.state })),
    ];
  },
});

registerFormatter("memory", {
  columns: [
    { key: "pid", header: "pid" },
    { key: "process", header: "process" },
    { key: "address", header: "address" },
    { key: "context", header: "context" },
  ],
  rows(result) {
    return (result as MemoryResult).matches.map((m) => ({
      pid: m.pid,
      process: m.process,
      address: `0x${m.address.toString(16)}`,
      region: m.region,
      context: m.context,
    }));
  },
});

interface ProcessFlags extends SweepFlags {
  name?: string;
  cmdline?: string;
  user?: string;
  pid?: number;
  ppid?: number;
  exe?: string;
  exeSha256?: string[];
  hashExe?: boolean;
  deletedExe?: boolean;
  startedAfter?: string;
  startedBefore?: string;
  listening?: boolean;
}

/** The process filters, shared by `dragnet process` and `dragnet memory`. */
function addProcessFilters(cmd: Command): Command {
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
    .option("--listening", "only processes owning a listening TCP or bound UDP socket (Linux only)");
}

function processParamsOf(flags: ProcessFlags): ProcessParams {
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
  };
  return params;
}

export function registerProcessCommand(program: Command): void {
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
      return sendAction(command, flags, "process", [{ module: { $case: "process", value: params } }]);
    }),
  );
}

interface MemoryFlags extends ProcessFlags {
  string?: string;
  hex?: string;
  regex?: string;
  maxBytes?: number;
  maxMatches?: number;
}

export function registerMemoryCommand(program: Command): void {
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
      return sendAction(command, flags, "memory", [{ module: { $case: "memory", value: params } }]);
    }),
  );
}

interface NetstatFlags extends SweepFlags {
  proto?: string;
  listening?: boolean;
  localPort?: number;
  localIp?: string;
  remoteIp?: string;
  remotePort?: number;
  state?: string;
  pid?: number;
  process?: string;
  neighbors?: boolean;
  neighborMac?: string;
}

export function registerNetstatCommand(program: Command): void {
  const cmd = program
    .command("netstat")
    .description("list TCP and UDP sockets with their processes, and neighbours (Linux)")
    .option("--proto <tcp|udp>", "one protocol (default both)")
    .option("--listening", "listening TCP sockets and bound, unconnected UDP sockets")
    .option("--local-port <n>", "local port", uint32("--local-port", 65535))
    .option("--local-ip <ip|cidr>", "local address or network")
    .option("--remote-ip <ip|cidr>", "remote address or network")
    .option("--remote-port <n>", "remote port", uint32("--remote-port", 65535))
    .option("--state <state>", "TCP state as ss writes it: ESTAB, LISTEN, TIME-WAIT…")
    .option("--pid <n>", "sockets of this process", uint32("--pid"))
    .option("--process <regex>", "regex on the owning process's name")
    .option("--neighbors", "also the neighbour table (ARP, NDP): IP and MAC")
    .option("--neighbor-mac <regex>", "neighbours whose MAC matches (lowercase, colons)");
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet netstat -t all --remote-ip 203.0.113.0/24                # who talks to that network
  dragnet netstat -t all --listening --local-port 4444
  dragnet netstat -t all --neighbors --neighbor-mac '^30:05:5c:'   # which hosts saw that MAC`,
  );
  cmd.action(
    handle(async (flags: NetstatFlags, command: Command) => {
      const params: NetstatParams = {
        proto: flags.proto ?? "",
        listening: flags.listening ?? false,
        localPort: flags.localPort,
        localIp: flags.localIp ?? "",
        remoteIp: flags.remoteIp ?? "",
        remotePort: flags.remotePort,
        state: flags.state ?? "",
        pid: flags.pid,
        process: flags.process ?? "",
        neighbors: flags.neighbors ?? flags.neighborMac !== undefined,
        neighborMac: flags.neighborMac ?? "",
        // --neighbor-mac alone asks about neighbours only: a host is "found" when one matched.
        onlyNeighbors:
          flags.neighborMac !== undefined &&
          !flags.neighbors &&
          [
            flags.proto,
            flags.listening,
            flags.localPort,
            flags.localIp,
            flags.remoteIp,
            flags.remotePort,
            flags.state,
            flags.pid,
            flags.process,
          ].every((v) => v === undefined),
      };
      return sendAction(command, flags, "netstat", [{ module: { $case: "netstat", value: params } }]);
    }),
  );
}
