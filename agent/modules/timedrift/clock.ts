import { Codes, DragnetError } from "../../../common/mod.js";
import { TimeReply, TimeRequest } from "../../../proto/mod.js";
import type { CoordinatorTopic } from "../registry.js";

// The agent's clock against the coordinator's, the way NTP's client does it:
// t0 (agent, before the request), t1 (coordinator, when it answered), t2
// (agent, after the reply). With the two legs of the trip taken as equal, the
// agent's clock was (t0 + t2) / 2 when the coordinator's read t1; the offset is
// wrong by at most half the round trip, so the fastest exchange counts.

/** What ModuleContext.ask is: the request goes to the coordinator that sent the command. */
export type AskCoordinator = (
  topic: CoordinatorTopic,
  payload: Uint8Array,
  timeoutMs: number,
) => Promise<Uint8Array>;

export interface ClockEstimate {
  /** Agent minus coordinator, at the fastest exchange. */
  offsetMs: number;
  /** That exchange's round trip. */
  rttMs: number;
  /** Exchanges answered. */
  samples: number;
  /** Exchanges that failed, one line each. */
  errors: string[];
}

export interface SampleOptions {
  samples?: number;
  timeoutMs?: number;
  /** The agent's wall clock in (fractional) ms; preciseClock() by default. */
  clock?: () => number;
  signal?: AbortSignal;
}

/** After this many failed exchanges the coordinator is taken not to answer. */
const MAX_FAILURES = 2;

/**
 * The wall clock with sub-millisecond steps: Date.now() moves in whole
 * milliseconds, too coarse for a round trip on one host; performance.now()
 * is fine but counts from elsewhere. Anchored at the instant Date.now() ticks
 * (a busy wait of at most a millisecond), for the few seconds a run lasts.
 * Being descheduled between seeing the tick and reading performance.now()
 * can only make an anchor too early, never too late: of a few tries, the
 * latest is the truest.
 */
export function preciseClock(tries = 5): () => number {
  let anchor = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < tries; i++) {
    const start = Date.now();
    let tick = Date.now();
    while (tick === start) tick = Date.now();
    anchor = Math.max(anchor, tick - performance.now());
  }
  return () => anchor + performance.now();
}

/** Times `samples` exchanges with the coordinator through `ask`; the one with the smallest round trip gives the offset. */
export async function sampleClock(ask: AskCoordinator, options: SampleOptions = {}): Promise<ClockEstimate> {
  const { samples = 5, timeoutMs = 2000, signal } = options;
  const clock = options.clock ?? preciseClock();
  const request = TimeRequest.encode({}).finish();
  const errors: string[] = [];
  let best: { offsetMs: number; rttMs: number } | undefined;
  let answered = 0;
  for (let i = 0; i < samples && errors.length < MAX_FAILURES; i++) {
    if (signal?.aborted) throw signal.reason;
    const t0 = clock();
    let reply: TimeReply;
    try {
      reply = TimeReply.decode(await ask("time", request, timeoutMs));
    } catch (err) {
      errors.push(`exchange ${i + 1}: ${(err as Error).message.slice(0, 300)}`);
      continue;
    }
    const t2 = clock();
    // A refusal is the same every time: no point asking again.
    if (reply.problem)
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `timedrift: the coordinator refused the time request (${reply.problem.code}: ${reply.problem.message})`,
      );
    // The coordinator reads whole milliseconds: its instant lies somewhere in the next one, its middle on average.
    const t1 = reply.coordinatorTimeMs + 0.5;
    const sample = { offsetMs: (t0 + t2) / 2 - t1, rttMs: t2 - t0 };
    answered++;
    if (!best || sample.rttMs < best.rttMs) best = sample;
  }
  if (!best)
    throw new DragnetError(
      Codes.UNAVAILABLE,
      `timedrift: the coordinator answered no time request (${errors.join("; ")})`,
    );
  return { ...best, samples: answered, errors };
}
