import type { Command } from "commander";
import { NetstatParams, type NetstatResult, type Operation } from "../../proto/api.js";
import { addActionFlags, handle, type SweepFlags, uint32 } from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet netstat`: who talks to whom across the fleet, and which hosts saw a MAC.

const endpoint = (ip: string, port: number) => (ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);

const formatter: ModuleFormatter<NetstatResult> = {
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
    return [
      ...result.sockets.map((s) => ({
        proto: s.proto,
        state: s.state,
        local: endpoint(s.localIp, s.localPort),
        remote: endpoint(s.remoteIp, s.remotePort),
        pid: s.pid || "",
        process: s.process,
        uid: s.uid,
        inode: s.inode,
      })),
      ...result.neighbors.map((n) => ({
        proto: "neigh",
        ip: n.ip,
        mac: n.mac,
        device: n.device,
        state: n.state,
      })),
    ];
  },
};

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

function register(program: Command, send: SendAction): void {
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
      return send(command, flags, nameWith("netstat", params), [
        { module: { $case: "netstat", value: params } },
      ]);
    }),
  );
}

/**
 * MIG's netstat holds lists of checks, each its own question; each becomes
 * one Dragnet netstat operation (an action answers all of them). Interface
 * addresses (localip, localmac) and neighbour IPs have no Dragnet equivalent
 * and are refused.
 */
function netstatFromMig(parameters: unknown, notes: Notes): Operation[] {
  const p = parameters as Record<string, unknown> | null;
  if (typeof p !== "object" || p === null)
    throw new SearchFormatError("netstat parameters must be an object");
  const unsupported = Object.keys(p).filter(
    (k) => !["connectedip", "listeningport", "neighbormac"].includes(k),
  );
  if (unsupported.length) {
    throw new SearchFormatError(
      `netstat ${unsupported.join(", ")} ${unsupported.length > 1 ? "have" : "has"} no Dragnet equivalent (interface addresses and neighbour IPs are not searched)`,
    );
  }
  const list = (k: string) => {
    const v = p[k] ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
      throw new SearchFormatError(`netstat ${k} must be a list of strings`);
    return v as string[];
  };
  const ops: NetstatParams[] = [
    ...list("connectedip").map((ip) => NetstatParams.fromPartial({ remoteIp: ip })),
    ...list("listeningport").map((port) => {
      if (!/^\d{1,5}$/.test(port) || Number(port) > 65535)
        throw new SearchFormatError(`netstat listeningport "${port}" is not a port`);
      // MIG's listeningport matches a socket on that local port in any state (an nc that accepted and stopped listening too).
      return NetstatParams.fromPartial({ localPort: Number(port) });
    }),
    ...list("neighbormac").map((mac) => NetstatParams.fromPartial({ onlyNeighbors: true, neighborMac: mac })),
  ];
  if (ops.length === 0) throw new SearchFormatError("netstat has no check");
  if (ops.length > 1) notes.push(`netstat: ${ops.length} checks become ${ops.length} netstat operations`);
  return ops.map((value): Operation => ({ module: { $case: "netstat", value } }));
}

export const netstatConsole = defineConsoleModule({
  name: "netstat",
  commands: ["netstat"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "netstat", convert: netstatFromMig },
});
