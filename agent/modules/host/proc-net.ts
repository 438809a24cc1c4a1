import { readFileSync } from "node:fs";

// The kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6) and IPv4
// neighbour table (/proc/net/arp), parsed. Every socket is listed, unconnected
// UDP ones included, in the agent's network namespace.

export interface RawSocket {
  proto: "tcp" | "udp";
  family: 4 | 6;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  state: string;
  uid: number;
  inode: number;
}

/** Kernel TCP states by number, named as ss names them. */
const TCP_STATES: Record<number, string> = {
  1: "ESTAB",
  2: "SYN-SENT",
  3: "SYN-RECV",
  4: "FIN-WAIT-1",
  5: "FIN-WAIT-2",
  6: "TIME-WAIT",
  7: "UNCONN",
  8: "CLOSE-WAIT",
  9: "LAST-ACK",
  10: "LISTEN",
  11: "CLOSING",
  12: "SYN-RECV",
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A /proc/net address: 32-bit words in host byte order, hex. */
function address(hex: string): string {
  const bytes = Buffer.from(hex, "hex");
  if (LITTLE_ENDIAN) for (let i = 0; i < bytes.length; i += 4) bytes.subarray(i, i + 4).reverse();
  if (bytes.length === 4) return bytes.join(".");
  // An IPv4 peer of a dual-stack socket: written ::ffff:a.b.c.d, as ss writes it.
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes.subarray(12).join(".")}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // The URL parser writes IPv6 the canonical way (RFC 5952), as ss and ip do.
  return new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1);
}

function parseTable(proto: "tcp" | "udp", family: 4 | 6, text: string): RawSocket[] {
  const sockets: RawSocket[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [local, remote] = [f[1]!, f[2]!];
    const [lip, lport] = local.split(":");
    const [rip, rport] = remote.split(":");
    const st = Number.parseInt(f[3]!, 16);
    sockets.push({
      proto,
      family,
      localIp: address(lip!),
      localPort: Number.parseInt(lport!, 16),
      remoteIp: address(rip!),
      remotePort: Number.parseInt(rport!, 16),
      // UDP has no states of its own: 1 is connected, 7 unconnected.
      state: proto === "udp" ? (st === 1 ? "ESTAB" : "UNCONN") : (TCP_STATES[st] ?? `STATE-${st}`),
      uid: Number(f[7]),
      inode: Number(f[9]),
    });
  }
  return sockets;
}

/** Every TCP and UDP socket, IPv4 and IPv6. A table the kernel lacks (no IPv6) is skipped. */
export function readSockets(protos: Array<"tcp" | "udp">, errors: string[]): RawSocket[] {
  const out: RawSocket[] = [];
  for (const proto of protos) {
    for (const family of [4, 6] as const) {
      const file = `/proc/net/${proto}${family === 6 ? "6" : ""}`;
      let text: string;
      try {
        text = readFileSync(file, "latin1");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT")
          errors.push(`${file}: ${(err as Error).message}`);
        continue;
      }
      // A loop, not a spread: a busy proxy's table can hold more rows than a call takes arguments.
      for (const socket of parseTable(proto, family, text)) out.push(socket);
    }
  }
  return out;
}

export interface RawNeighbor {
  ip: string;
  mac: string;
  device: string;
  state: string;
}

/** ARP flags: 0x2 complete, 0x4 permanent. */
function arpState(flags: number): string {
  if (flags & 0x4) return "PERMANENT";
  if (flags & 0x2) return "REACHABLE";
  return "INCOMPLETE";
}

/** The IPv4 neighbour table. (IPv6's is only reachable over netlink.) */
export function readArp(errors: string[]): RawNeighbor[] {
  let text: string;
  try {
    text = readFileSync("/proc/net/arp", "latin1");
  } catch (err) {
    errors.push(`/proc/net/arp: ${(err as Error).message}`);
    return [];
  }
  return text
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 6)
    .map((f) => ({
      ip: f[0]!,
      mac: f[3]!.toLowerCase(),
      device: f[5]!,
      state: arpState(Number.parseInt(f[2]!, 16)),
    }));
}
