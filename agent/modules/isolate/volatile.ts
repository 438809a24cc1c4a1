import { readFileSync } from "node:fs";
import type { LoggedInUser, NetstatParams, ProcessParams, Route, VolatileState } from "../../../proto/mod.js";
import { netstatModule } from "../netstat/index.js";
import { processModule } from "../process/index.js";
import type { ModuleContext } from "../registry.js";

// What a host looked like just before containment changed it: every process
// with its executable's SHA-256, every socket with its owner, the neighbour
// (ARP/NDP) table, who is logged in, and the routing table. The process and netstat modules' own answers,
// so the snapshot reads exactly like a sweep would have.

const ALL_PROCESSES: ProcessParams = {
  name: "",
  cmdline: "",
  user: "",
  pid: undefined,
  ppid: undefined,
  exe: "",
  exeSha256: [],
  hashExe: true,
  deletedExe: false,
  startedAfterMs: undefined,
  startedBeforeMs: undefined,
  listening: false,
  excludePids: [],
};

const ALL_SOCKETS: NetstatParams = {
  proto: "",
  listening: false,
  localPort: undefined,
  localIp: "",
  remoteIp: "",
  remotePort: undefined,
  state: "",
  pid: undefined,
  process: "",
  neighbors: true,
  neighborMac: "",
  onlyNeighbors: false,
};

/** A little-endian hex IPv4 address of /proc/net/route. */
function ipv4(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join(".");
}

function ipv6(hex: string): string {
  const groups = hex.match(/.{4}/g) ?? [];
  return groups
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")
    .replace(/(^|:)0(:0)+(:|$)/, "::");
}

/** The kernel's routing tables (IPv4 and IPv6) as `ip route` would list them. */
export function readRoutes(errors: string[]): Route[] {
  const routes: Route[] = [];
  try {
    for (const line of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 8) continue;
      const mask = Number.parseInt(f[7]!, 16);
      const bits = mask.toString(2).replace(/0/g, "").length;
      routes.push({
        family: 4,
        destination: `${ipv4(f[1]!)}/${bits}`,
        gateway: ipv4(f[2]!),
        interface: f[0]!,
        metric: Number(f[6]),
      });
    }
  } catch (err) {
    errors.push(`/proc/net/route: ${(err as Error).message}`);
  }
  try {
    for (const line of readFileSync("/proc/net/ipv6_route", "utf8").split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      routes.push({
        family: 6,
        destination: `${ipv6(f[0]!)}/${Number.parseInt(f[1]!, 16)}`,
        gateway: ipv6(f[4]!),
        interface: f[9]!,
        metric: Number.parseInt(f[5]!, 16),
      });
    }
  } catch (err) {
    errors.push(`/proc/net/ipv6_route: ${(err as Error).message}`);
  }
  return routes;
}

async function loggedInUsers(errors: string[]): Promise<LoggedInUser[]> {
  try {
    const si = await import("systeminformation");
    return (await si.users()).map((u) => ({
      user: u.user,
      terminal: u.tty,
      host: u.ip,
      loginAtMs: Date.parse(`${u.date}T${u.time}`) || 0,
    }));
  } catch (err) {
    errors.push(`logged-in users: ${(err as Error).message}`);
    return [];
  }
}

export async function takeVolatileState(
  ctx: Pick<ModuleContext, "signal" | "log" | "stateDir">,
): Promise<VolatileState> {
  const errors: string[] = [];
  const takenAtMs = Date.now();
  /** A part of the snapshot that failed is noted, and the rest is still taken. */
  const noting = (what: string) => (err: unknown) => {
    errors.push(`${what}: ${(err as Error).message}`);
    return undefined;
  };
  const [processes, sockets] = await Promise.all([
    processModule.run(ALL_PROCESSES, ctx).then((o) => o.result, noting("processes")),
    netstatModule.run(ALL_SOCKETS, ctx).then((o) => o.result, noting("sockets")),
  ]);
  errors.push(...(processes?.errors ?? []), ...(sockets?.errors ?? []));
  return {
    takenAtMs,
    processes: processes?.processes ?? [],
    sockets: sockets?.sockets ?? [],
    neighbors: sockets?.neighbors ?? [],
    users: await loggedInUsers(errors),
    routes: readRoutes(errors),
    errors: errors.slice(0, 50),
  };
}
