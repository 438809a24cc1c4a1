import { BlockList, isIP } from "node:net";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { NetstatParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

/** TCP states as ss(8) writes them. */
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

export interface CompiledNetstatFilter {
  protos: Array<"tcp" | "udp">;
  local?: (ip: string) => boolean;
  remote?: (ip: string) => boolean;
  process?: RegExp;
  neighborMac?: RegExp;
  state?: string;
}

export function compileNetstatFilter(p: NetstatParams): CompiledNetstatFilter {
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

export function checkNetstat(params: NetstatParams): void {
  compileNetstatFilter(params);
}
