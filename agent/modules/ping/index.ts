import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { PingResult } from "../../../proto/mod.js";
import { defineModule } from "../registry.js";
import { checkPing, DEFAULT_COUNT, DEFAULT_PROBE_TIMEOUT_MS } from "./check.js";
import { icmpEcho } from "./icmp.js";
import { type Probe, tcpProbe, udpProbe } from "./probes.js";

// `ping`: can this agent reach a host — for "which hosts can still reach the
// C2" and for checking an isolation from the inside. The destination is the
// signed action's only: the name is resolved once, and every probe goes to
// that one address.

/** Between TCP and UDP probes, as ping's own interval: no burst at anyone's port. */
const PROBE_GAP_MS = 200;

const round = (ms: number) => Math.round(ms * 1000) / 1000;

function withRtts(result: PingResult, rtts: number[]): void {
  if (!rtts.length) return;
  result.rttMinMs = round(Math.min(...rtts));
  result.rttMaxMs = round(Math.max(...rtts));
  result.rttAvgMs = round(rtts.reduce((a, b) => a + b, 0) / rtts.length);
}

/** The state TCP or UDP probes add up to: any answer wins, then a refusal, then what the silence means. */
function stateOf(protocol: string, probes: Probe[]): string {
  if (probes.some((p) => p.kind === "answered")) return "reachable";
  if (probes.some((p) => p.kind === "refused")) return "refused";
  // UDP owes no answer: an open port and a firewall that drops look the same.
  if (protocol === "udp" && probes.every((p) => p.kind === "silent")) return "open|filtered";
  return "unreachable";
}

/** Each distinct problem once, with how many probes had it (TCP's silence is one: UDP's is its nature). */
function problems(protocol: string, probes: Probe[], timeoutMs: number): string[] {
  const counts = new Map<string, number>();
  for (const p of probes) {
    const error =
      p.kind === "unreachable" || p.kind === "error"
        ? p.error
        : p.kind === "silent" && protocol === "tcp"
          ? `no answer within ${timeoutMs} ms`
          : undefined;
    if (error) counts.set(error, (counts.get(error) ?? 0) + 1);
  }
  return [...counts].map(([e, n]) => (n > 1 ? `${e} (${n} probes)` : e));
}

export const pingModule = defineModule({
  name: "ping",
  check: checkPing,
  async run(p, ctx) {
    const count = p.count ?? DEFAULT_COUNT;
    const timeoutMs = p.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const result: PingResult = {
      host: p.host,
      address: "",
      protocol: p.protocol,
      port: p.port,
      state: "",
      sent: 0,
      answered: 0,
      rttMinMs: 0,
      rttAvgMs: 0,
      rttMaxMs: 0,
      errors: [],
    };
    try {
      result.address = isIP(p.host) ? p.host : (await lookup(p.host, { verbatim: true })).address;
    } catch (err) {
      result.state = "unresolved";
      result.errors.push(`${p.host}: ${(err as Error).message.slice(0, 200)}`);
      return { found: false, result };
    }

    if (p.protocol === "icmp") {
      const echo = await icmpEcho(result.address, count, timeoutMs, ctx.signal);
      result.sent = echo.transmitted || count;
      result.answered = echo.rttsMs.length;
      withRtts(result, echo.rttsMs);
      result.state = result.answered > 0 ? "reachable" : "unreachable";
      result.errors.push(...new Set(echo.unreachable));
      if (echo.problem) result.errors.push(echo.problem);
      else if (!result.answered && !echo.unreachable.length)
        result.errors.push(`no echo reply within ${timeoutMs} ms (${result.sent} requests)`);
      return { found: result.answered > 0, result };
    }

    const probe = p.protocol === "tcp" ? tcpProbe : udpProbe;
    const probes: Probe[] = [];
    for (let i = 0; i < count; i++) {
      if (i > 0) await sleep(PROBE_GAP_MS, undefined, { signal: ctx.signal });
      probes.push(await probe(result.address, p.port, timeoutMs, ctx.signal));
      result.sent++;
      if (ctx.signal.aborted) throw ctx.signal.reason;
    }
    const rtts = probes.flatMap((x) => (x.kind === "answered" || x.kind === "refused" ? [x.rttMs] : []));
    result.answered = rtts.length;
    withRtts(result, rtts);
    result.state = stateOf(p.protocol, probes);
    result.errors.push(...problems(p.protocol, probes, timeoutMs));
    // Found: the destination is up (a refusal says so too); "open|filtered" proves nothing.
    return { found: result.state === "reachable" || result.state === "refused", result };
  },
});
