import { isIP } from "node:net";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { PingParams } from "../../../proto/mod.js";

export const PROTOCOLS = ["tcp", "udp", "icmp"] as const;
export type PingProtocol = (typeof PROTOCOLS)[number];
export const DEFAULT_COUNT = 3;
export const MAX_COUNT = 10;
export const DEFAULT_PROBE_TIMEOUT_MS = 2000;
export const MAX_PROBE_TIMEOUT_MS = 10_000;

/** An RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 253 characters at most. */
const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

export function isHostName(host: string): boolean {
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  return name.length > 0 && name.length <= 253 && name.split(".").every((label) => LABEL.test(label));
}

const quoted = (s: string) => JSON.stringify(s.slice(0, 80));

export function checkPing(p: PingParams): void {
  // The host becomes an argument of the ping program: nothing that reads as an option.
  if (p.host.startsWith("-"))
    throw new DragnetError(Codes.PARAMS, `ping: host ${quoted(p.host)} starts with "-" (not a host)`);
  if (!isIP(p.host) && !isHostName(p.host))
    throw new DragnetError(
      Codes.PARAMS,
      `ping: host ${quoted(p.host)} is neither an IP address nor a host name (letters, digits, "-" and ".")`,
    );
  if (!(PROTOCOLS as readonly string[]).includes(p.protocol))
    throw new DragnetError(Codes.PARAMS, `ping: protocol is tcp, udp or icmp, not ${quoted(p.protocol)}`);
  if (p.protocol === "icmp" ? p.port !== 0 : p.port < 1 || p.port > 65535)
    throw new DragnetError(
      Codes.PARAMS,
      p.protocol === "icmp"
        ? `ping: icmp has no port (got ${p.port})`
        : `ping: ${p.protocol} needs a port from 1 to 65535 (got ${p.port})`,
    );
  if (p.count !== undefined && (p.count < 1 || p.count > MAX_COUNT))
    throw new DragnetError(Codes.PARAMS, `ping: count is 1 to ${MAX_COUNT}, not ${p.count}`);
  if (p.timeoutMs !== undefined && (p.timeoutMs < 1 || p.timeoutMs > MAX_PROBE_TIMEOUT_MS))
    throw new DragnetError(
      Codes.PARAMS,
      `ping: the timeout of a probe is 1 to ${MAX_PROBE_TIMEOUT_MS} ms, not ${p.timeoutMs} ms`,
    );
}
