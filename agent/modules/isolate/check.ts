import { isIPv4, isIPv6 } from "node:net";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { IsolateParams } from "../../../proto/mod.js";

const MAX_ALLOW = 64;

/** A peer the host may still talk to: an address or network, and a port or every port. */
export interface Peer {
  /** An address or CIDR. */
  net: string;
  port?: number;
  family: 4 | 6;
}

/** Parses an allow-list entry: "CIDR", "CIDR:PORT", "[V6CIDR]:PORT". */
export function parsePeer(text: string): Peer | undefined {
  let net = text;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (bracketed) {
    net = bracketed[1]!;
    if (bracketed[2]) port = Number(bracketed[2]);
  } else if (!text.includes("::") && (text.match(/:/g)?.length ?? 0) === 1) {
    // One colon: IPv4 with a port (IPv6 has several).
    [net, port] = [text.slice(0, text.indexOf(":")), Number(text.slice(text.indexOf(":") + 1))];
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) return undefined;
  const [ip, bits, extra] = net.split("/");
  if (extra !== undefined || !ip) return undefined;
  const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : undefined;
  if (!family) return undefined;
  if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)))
    return undefined;
  return { net, port, family };
}

export function checkIsolate(p: IsolateParams): void {
  if (p.allow.length > MAX_ALLOW)
    throw new DragnetError(Codes.PARAMS, `isolate: more than ${MAX_ALLOW} allow entries`);
  for (const a of p.allow) {
    if (!parsePeer(a)) {
      throw new DragnetError(
        Codes.PARAMS,
        `isolate: allow entry "${a.slice(0, 80)}" is not CIDR or CIDR:PORT (IPv6 with a port in brackets: [2001:db8::/32]:22)`,
      );
    }
  }
}
