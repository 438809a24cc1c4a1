import { readFileSync } from "node:fs";
import type { Socket } from "node:net";

// Who is on the other end of a loopback connection. Browsers share cookies
// across every port of 127.0.0.1, and a one-time link can be read from a
// browser's command line: a cookie or token alone does not prove that the
// investigator is asking. On Linux the kernel knows: the client's socket, in
// /proc/net/tcp (same host, same network namespace), names its owner's uid.

/** "0100007F:9AFD" for 127.0.0.1:39677 — how /proc/net/tcp writes an IPv4 address and port. */
function procAddress(ip: string, port: number): string {
  const octets = ip.split(".").map(Number);
  const hex = octets
    .reverse()
    .map((o) => o.toString(16).padStart(2, "0"))
    .join("")
    .toUpperCase();
  return `${hex}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * The uid that owns the client end of `socket` (a connection to this process
 * over IPv4 loopback), or undefined when the kernel does not say (not Linux,
 * or the connection is already gone).
 */
export function peerUid(socket: Socket): number | undefined {
  const ip = (socket.remoteAddress ?? "").replace(/^::ffff:/, "");
  if (!/^127\.\d+\.\d+\.\d+$/.test(ip) || !socket.remotePort || !socket.localPort) return undefined;
  const client = procAddress(ip, socket.remotePort);
  const server = procAddress((socket.localAddress ?? "").replace(/^::ffff:/, ""), socket.localPort);
  let table: string;
  try {
    table = readFileSync("/proc/net/tcp", "utf8");
  } catch {
    return undefined;
  }
  for (const line of table.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local remote st queues tr retrnsmt uid …
    if (f[1] === client && f[2] === server) return Number(f[7]);
  }
  return undefined;
}
