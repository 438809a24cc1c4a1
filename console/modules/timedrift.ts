import type { Command } from "commander";
import type { Operation, TimedriftParams, TimedriftResult } from "../../proto/api.js";
import { addActionFlags, duration, handle } from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet timedrift`: whose clock is off, and by how much — against the
// coordinator's clock, over each agent's own link — and is NTP keeping it.
// Found: hosts past the threshold (--max-drift, default 2 s).

/** "+1.250s", "-0.412ms": a signed difference in a unit a person reads at a glance. */
function signedMs(v: unknown): string {
  if (typeof v !== "number") return "";
  const sign = v < 0 ? "-" : "+";
  const abs = Math.abs(v);
  return abs >= 1000 ? `${sign}${(abs / 1000).toFixed(3)}s` : `${sign}${abs.toFixed(3)}ms`;
}

const formatter: ModuleFormatter<TimedriftResult> = {
  columns: [
    { key: "offsetMs", header: "offset", show: signedMs },
    { key: "rttMs", header: "rtt", show: (v) => (typeof v === "number" ? `${v.toFixed(3)}ms` : "") },
    { key: "ntp", header: "ntp" },
    { key: "ntpBy", header: "ntp by" },
    { key: "ntpSource", header: "ntp source" },
    { key: "maxDriftMs", header: "max drift", show: (v) => `${v}ms` },
    { key: "samples", header: "samples" },
    { key: "agentTime", header: "agent time" },
    { key: "errors", header: "errors", show: (v) => (Array.isArray(v) ? v.join("; ") : "") },
  ],
  rows: (r) => [
    {
      // Microseconds: finer is noise on any link.
      offsetMs: Math.round(r.offsetMs * 1000) / 1000,
      rttMs: Math.round(r.rttMs * 1000) / 1000,
      ntp: r.ntp,
      ntpBy: r.ntpBy,
      ntpSource: r.ntpSource,
      maxDriftMs: r.maxDriftMs,
      samples: r.samples,
      agentTime: isoTime(r.agentTimeMs),
      errors: r.errors,
    },
  ],
};

interface TimedriftFlags {
  maxDrift?: number;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("timedrift")
    .description("each agent's clock against the coordinator's (NTP-style), and its NTP state")
    .option(
      "--max-drift <duration>",
      "found when the clocks differ by more than this (500ms, 2s, 1m; default 2s)",
      duration("--max-drift"),
    );
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
The offset is the agent's clock minus the coordinator's, from the fastest of
five timed exchanges; it is good to about half the rtt shown.

Examples:
  dragnet timedrift -t all                      # hosts whose clock is more than 2 s off
  dragnet timedrift -t 'tags.role == "dc"' --max-drift 500ms --json`,
  );
  cmd.action(
    handle(async (flags: TimedriftFlags & Parameters<SendAction>[1], command: Command) => {
      const params: TimedriftParams = { maxDriftMs: flags.maxDrift };
      return send(command, flags, nameWith("timedrift", params), [
        { module: { $case: "timedrift", value: params } },
      ]);
    }),
  );
}

const GO_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A Go duration (time.ParseDuration: "5s", "1.5h", "2h45m", "300ms") in ms; undefined when it is not one. */
export function goDurationMs(text: string): number | undefined {
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  if (!text) return undefined;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * GO_UNITS[m[2]!]!;
    at = re.lastIndex;
  }
  return total;
}

/** MIG's timedrift parameters: {"drift": "5s"} (a Go duration), or none at all. */
function fromMig(parameters: unknown, notes: Notes): Operation[] {
  const p = (parameters ?? {}) as { drift?: unknown };
  if (typeof p !== "object" || Array.isArray(p))
    throw new SearchFormatError("timedrift parameters are not an object");
  for (const key of Object.keys(p))
    if (key !== "drift")
      throw new SearchFormatError(`timedrift parameter "${key}" has no Dragnet equivalent`);
  if (p.drift === undefined || p.drift === "") {
    // MIG without a drift only reports local times (every host "found"); Dragnet always measures.
    notes.push(
      "timedrift: MIG's action gives no drift; Dragnet measures every clock and finds those over 2s",
    );
    return [{ module: { $case: "timedrift", value: { maxDriftMs: undefined } } }];
  }
  const ms = typeof p.drift === "string" ? goDurationMs(p.drift) : undefined;
  if (ms === undefined)
    throw new SearchFormatError(
      `timedrift drift ${JSON.stringify(p.drift)} is not a duration (5s, 300ms, 1h)`,
    );
  if (ms < 1 || ms > 86_400_000)
    throw new SearchFormatError(`timedrift drift "${p.drift}" is outside what Dragnet measures (1ms to 24h)`);
  const maxDriftMs = Math.round(ms);
  if (maxDriftMs !== ms)
    notes.push(`timedrift: drift "${p.drift}" becomes ${maxDriftMs}ms (whole milliseconds)`);
  notes.push(
    "timedrift: MIG compares with public NTP servers; Dragnet compares with the coordinator's clock",
  );
  return [{ module: { $case: "timedrift", value: { maxDriftMs } } }];
}

export const timedriftConsole = defineConsoleModule({
  name: "timedrift",
  commands: ["timedrift"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "timedrift", convert: fromMig },
});
