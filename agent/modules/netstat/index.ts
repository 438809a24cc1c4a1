import { execFile } from "node:child_process";
import { BlockList, isIP } from "node:net";
import { promisify } from "node:util";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { Neighbor, NetstatParams, NetstatResult, Socket } from "../../../proto/mod.js";
import { type RawNeighbor, type RawSocket, readArp, readSockets } from "../host/proc-net.js";
import { hasProcfs, listPids, processName, socketInodes } from "../host/procfs.js";
import { optionalRegex } from "../params.js";
import { defineModule } from "../registry.js";
import { timeSlicer } from "../time-slice.js";

// `netstat`: every TCP and UDP socket (unconnected UDP included) with the
// process that owns it, and the neighbour table — from /proc on Linux.

const STATES = new Set([
  "ESTAB",
  "SYN-SENT",
  "SYN-RECV",
  "FIN-WAIT-1",
  "FIN-WAIT-2",
  "TIME-WAIT",
  "UNCONN",
  "CLOSE-WAIT",
  "LAST-ACK",
  "LISTEN",
  "CLOSING",
]);

/** An address or CIDR as a matcher; undefined when none was given. */
function addressMatcher(what: string, spec: string): ((ip: string) => boolean) | undefined {
  if (!spec) return undefined;
  const parts = spec.split("/");
  const [addr, bits] = parts;
  const family = isIP(addr ?? "");
  const prefix =
    bits === undefined ? (family === 6 ? 128 : 32) : /^\d{1,3}$/.test(bits) ? Number(bits) : Number.NaN;
  if (parts.length > 2 || !family || !Number.isInteger(prefix) || prefix > (family === 6 ? 128 : 32)) {
    throw new DragnetError(Codes.PARAMS, `netstat ${what} "${spec}" is not an IP address or CIDR`);
  }
  const list = new BlockList();
  list.addSubnet(addr!, prefix, family === 6 ? "ipv6" : "ipv4");
  // BlockList also places an IPv4 peer of a dual-stack socket (::ffff:a.b.c.d) in IPv4 networks.
  return (ip) => {
    const f = isIP(ip);
    return f !== 0 && list.check(ip, f === 6 ? "ipv6" : "ipv4");
  };
}

interface Compiled {
  protos: Array<"tcp" | "udp">;
  local?: (ip: string) => boolean;
  remote?: (ip: string) => boolean;
  process?: RegExp;
  neighborMac?: RegExp;
  state?: string;
}

function compile(p: NetstatParams): Compiled {
  const proto = p.proto.toLowerCase();
  if (proto && proto !== "tcp" && proto !== "udp")
    throw new DragnetError(Codes.PARAMS, `netstat proto is tcp or udp, not "${p.proto}"`);
  const state = p.state.toUpperCase().replace("ESTABLISHED", "ESTAB").replaceAll("_", "-");
  if (state && !STATES.has(state)) {
    throw new DragnetError(
      Codes.PARAMS,
      `netstat state "${p.state}" is not one of ${[...STATES].join(", ")}`,
    );
  }
  for (const [what, port] of [
    ["local port", p.localPort],
    ["remote port", p.remotePort],
  ] as const) {
    if (port !== undefined && port > 65535)
      throw new DragnetError(Codes.PARAMS, `netstat ${what} ${port} is over 65535`);
  }

  return {
    protos: proto ? [proto as "tcp" | "udp"] : ["tcp", "udp"],
    local: addressMatcher("local address", p.localIp),
    remote: addressMatcher("remote address", p.remoteIp),
    process: optionalRegex("netstat process regex", p.process),
    neighborMac: optionalRegex("netstat neighbour MAC regex", p.neighborMac, "i"),
    state: state || undefined,
  };
}

/** Listening TCP sockets and bound, unconnected UDP ones. */
function isListening(s: RawSocket): boolean {
  return s.state === "LISTEN" || (s.proto === "udp" && s.state === "UNCONN");
}

/** Inodes of listening sockets (for the process module's --listening). */
export function listeningInodes(errors: string[]): Set<number> {
  return new Set(
    readSockets(["tcp", "udp"], errors)
      .filter(isListening)
      .map((s) => s.inode),
  );
}

interface Owner {
  pid: number;
  name: string;
}

/** socket inode → every process holding it (a forked server, a shell and its children share one). */
async function socketOwners(signal: AbortSignal): Promise<Map<number, Owner[]>> {
  const owners = new Map<number, Owner[]>();
  const slice = timeSlicer(signal);
  for (const pid of listPids()) {
    await slice();
    const inodes = socketInodes(pid);
    if (inodes.length === 0) continue;
    const name = processName(pid);
    for (const inode of inodes) {
      const list = owners.get(inode);
      if (list) list.push({ pid, name });
      else owners.set(inode, [{ pid, name }]);
    }
  }
  return owners;
}

/** IPv6 neighbours (NDP) are only reachable over netlink: ask ip(8) when it is there. */
async function ipv6Neighbors(errors: string[]): Promise<RawNeighbor[]> {
  try {
    const { stdout } = await promisify(execFile)("ip", ["-6", "neigh", "show"], { timeout: 5000 });
    return stdout
      .split("\n")
      .map((l) => /^(\S+) dev (\S+)(?: lladdr (\S+))?.*?\s(\S+)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ ip: m[1]!, device: m[2]!, mac: (m[3] ?? "").toLowerCase(), state: m[4]! }));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      errors.push(`ip -6 neigh: ${(err as Error).message}`);
    return [];
  }
}

export const netstatModule = defineModule({
  name: "netstat",
  kind: "investigation",
  summary: "list TCP and UDP sockets with their processes, and the neighbour table",
  check(params) {
    compile(params);
  },
  async run(params, ctx) {
    const c = compile(params);
    if (!hasProcfs) throw new DragnetError(Codes.PARAMS, "netstat needs Linux's /proc on this version");
    const result: NetstatResult = { sockets: [], neighbors: [], errors: [] };
    const wanted = (params.onlyNeighbors ? [] : readSockets(c.protos, result.errors)).filter(
      (s) =>
        (!params.listening || isListening(s)) &&
        (params.localPort === undefined || s.localPort === params.localPort) &&
        (params.remotePort === undefined || s.remotePort === params.remotePort) &&
        (!c.local || c.local(s.localIp)) &&
        (!c.remote || c.remote(s.remoteIp)) &&
        (!c.state || s.state === c.state),
    );
    const owners = wanted.length > 0 ? await socketOwners(ctx.signal) : new Map<number, Owner[]>();
    for (const s of wanted) {
      const all = owners.get(s.inode) ?? [];
      // Any owner may satisfy --pid / --process.
      if (params.pid !== undefined && !all.some((o) => o.pid === params.pid)) continue;
      if (c.process && !all.some((o) => c.process!.test(o.name))) continue;
      result.sockets.push(socket(s, all));
    }
    if (params.neighbors || params.onlyNeighbors) {
      const all = [...readArp(result.errors), ...(await ipv6Neighbors(result.errors))];
      result.neighbors = all
        .filter((n) => !c.neighborMac || c.neighborMac.test(n.mac))
        .map((n): Neighbor => ({ ...n }));
    }
    // Every filter given must hold: sockets when socket filters apply, a neighbour when a MAC was asked for.
    const socketsFound = params.onlyNeighbors || result.sockets.length > 0;
    const neighborFound = !c.neighborMac || result.neighbors.length > 0;
    return {
      found: socketsFound && neighborFound && (result.sockets.length > 0 || result.neighbors.length > 0),
      result,
    };
  },
});

function socket(s: RawSocket, owners: Owner[]): Socket {
  return {
    proto: s.proto,
    family: s.family,
    localIp: s.localIp,
    localPort: s.localPort,
    remoteIp: s.remoteIp,
    remotePort: s.remotePort,
    state: s.state,
    pid: owners[0]?.pid ?? 0,
    process: owners[0]?.name ?? "",
    uid: s.uid,
    inode: s.inode,
    owners: owners.map((o) => ({ pid: o.pid, process: o.name })),
  };
}
