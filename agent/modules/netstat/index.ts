import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { Neighbor, NetstatResult, Socket } from "../../../proto/mod.js";
import { type RawNeighbor, type RawSocket, readArp, readSockets } from "../host/proc-net.js";
import { hasProcfs, listPids, processName, socketInodes } from "../host/procfs.js";
import { defineModule } from "../registry.js";
import { timeSlicer } from "../time-slice.js";
import { checkNetstat, compileNetstatFilter } from "./check.js";

// `netstat`: every TCP and UDP socket (unconnected UDP included) with the
// process that owns it, and the neighbour table — from /proc on Linux.

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
  check: checkNetstat,
  async run(params, ctx) {
    const c = compileNetstatFilter(params);
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
