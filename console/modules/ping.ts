import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import type { Operation, PingParams, PingResult } from "../../proto/api.js";
import { addActionFlags, duration, handle, uint32 } from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet ping`: can each agent reach a host — a TCP connect, a UDP probe or
// an ICMP echo, with round trips. For "which hosts can still reach the C2",
// and for checking an isolation from the inside. Found: the destination
// answered (a TCP reset or an ICMP port unreachable counts: the host is up).

const ms = (v: unknown) => (typeof v === "number" && v > 0 ? `${v.toFixed(3)}ms` : "");

const formatter: ModuleFormatter<PingResult> = {
  columns: [
    { key: "host", header: "host" },
    { key: "address", header: "address" },
    { key: "protocol", header: "proto" },
    { key: "port", header: "port", show: (v) => (v ? String(v) : "") },
    { key: "state", header: "state" },
    { key: "answered", header: "answered", show: (v, row) => `${v}/${row.sent}` },
    { key: "rttMinMs", header: "rtt min", show: ms },
    { key: "rttAvgMs", header: "rtt avg", show: ms },
    { key: "rttMaxMs", header: "rtt max", show: ms },
    { key: "errors", header: "errors", show: (v) => (Array.isArray(v) ? v.join("; ") : "") },
  ],
  rows: (r) => [
    {
      host: r.host,
      address: r.address,
      protocol: r.protocol,
      port: r.port,
      state: r.state,
      sent: r.sent,
      answered: r.answered,
      rttMinMs: r.rttMinMs,
      rttAvgMs: r.rttAvgMs,
      rttMaxMs: r.rttMaxMs,
      errors: r.errors,
    },
  ],
};

interface PingFlags {
  host: string;
  port?: number;
  protocol?: string;
  count?: number;
  probeTimeout?: number;
}

function protocolOf(value: string): string {
  if (!["tcp", "udp", "icmp"].includes(value))
    throw new InvalidArgumentError(`--protocol is tcp, udp or icmp, not "${value}"`);
  return value;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("ping")
    .description("can each agent reach a host: TCP connect, UDP probe or ICMP echo, with round-trip times")
    .requiredOption(
      "--host <name|ip>",
      "the destination: a host name (resolved by each agent) or an IP address",
    )
    .option("--port <n>", "TCP or UDP port (then --protocol defaults to tcp)", uint32("--port", 65535))
    .option("--protocol <tcp|udp|icmp>", "default: tcp with --port, icmp without", protocolOf)
    .option("--count <n>", "probes (default 3, at most 10)", uint32("--count", 0xffffffff))
    // --timeout is the action's (how long each agent may run it).
    .option(
      "--probe-timeout <duration>",
      "wait for each probe (default 2s, at most 10s)",
      duration("--probe-timeout"),
    );
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
States: reachable (connected, echo or UDP reply), refused (TCP reset or ICMP
port unreachable: the host is up, the port closed), open|filtered (UDP: no
answer at all), unreachable (no answer, or no route), unresolved (the name did
not resolve on the agent).

Examples:
  dragnet ping -t all --host c2.example.net --port 443            # who can still reach the C2
  dragnet ping -t 'isolated' --host 10.0.0.53 --port 53 --protocol udp
  dragnet ping -t 'id == "AGENT"' --host 192.0.2.10 --count 5 --probe-timeout 1s`,
  );
  cmd.action(
    handle(async (flags: PingFlags & Parameters<SendAction>[1], command: Command) => {
      const protocol = flags.protocol ?? (flags.port !== undefined ? "tcp" : "icmp");
      const params: PingParams = {
        host: flags.host,
        protocol,
        port: flags.port ?? 0,
        count: flags.count,
        timeoutMs: flags.probeTimeout,
      };
      return send(command, flags, nameWith("ping", params), [{ module: { $case: "ping", value: params } }]);
    }),
  );
}

const MIG_KEYS = ["destination", "destinationport", "protocol", "count", "timeout"];

/** A MIG number that must be a whole one (MIG's are JSON floats). */
function wholeNumber(name: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v))
    throw new SearchFormatError(`ping ${name} ${JSON.stringify(v)} is not a whole number`);
  return v;
}

/**
 * MIG's ping parameters: destination, destinationport, protocol, count, and
 * timeout in seconds (MIG's defaults: 3 probes, 5 s each).
 */
function fromMig(parameters: unknown, notes: Notes): Operation[] {
  const p = parameters as Record<string, unknown> | null;
  if (typeof p !== "object" || p === null || Array.isArray(p))
    throw new SearchFormatError("ping parameters are not an object");
  for (const key of Object.keys(p))
    if (!MIG_KEYS.includes(key))
      throw new SearchFormatError(`ping parameter "${key}" has no Dragnet equivalent`);
  const host = p.destination;
  if (typeof host !== "string" || !host) throw new SearchFormatError('ping parameters have no "destination"');
  const protocol = p.protocol;
  if (protocol !== "tcp" && protocol !== "udp" && protocol !== "icmp")
    throw new SearchFormatError(`ping protocol ${JSON.stringify(protocol)} is not tcp, udp or icmp`);
  let port = wholeNumber("destinationport", p.destinationport) ?? 0;
  if (protocol === "icmp") {
    // MIG's command line leaves -1 for "no port".
    if (port !== 0 && port !== -1)
      throw new SearchFormatError(`ping destinationport ${port} cannot go with icmp (it has no ports)`);
    port = 0;
  } else if (port < 1 || port > 65535) {
    throw new SearchFormatError(`ping destinationport ${port} is not a ${protocol} port (1 to 65535)`);
  }
  const count = wholeNumber("count", p.count) || 3;
  if (count < 1 || count > 10)
    throw new SearchFormatError(`ping count ${count} cannot be carried (Dragnet sends 1 to 10 probes)`);
  if (p.timeout !== undefined && (typeof p.timeout !== "number" || p.timeout < 0))
    throw new SearchFormatError(`ping timeout ${JSON.stringify(p.timeout)} is not a number of seconds`);
  const timeoutMs = Math.round(((p.timeout as number | undefined) || 5) * 1000);
  if (timeoutMs < 1 || timeoutMs > 10_000)
    throw new SearchFormatError(
      `ping timeout ${p.timeout}s cannot be carried (Dragnet waits 1ms to 10s a probe)`,
    );
  if (protocol === "udp")
    notes.push(
      "ping: MIG counts a silent UDP port as reachable; Dragnet says open|filtered and does not find it",
    );
  return [{ module: { $case: "ping", value: { host, protocol, port, count, timeoutMs } } }];
}

export const pingConsole = defineConsoleModule({
  name: "ping",
  commands: ["ping"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "ping", convert: fromMig },
});
