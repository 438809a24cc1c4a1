import { createHash, sign, verify } from "node:crypto";
import { type ActionBody, ScheduleStopBody, type SignedScheduleStop } from "../proto/mod.js";
import { isResponseModule } from "../proto/modules.js";
import { Codes, DragnetError } from "./errors.js";
import { idOf } from "./ids.js";
import type { Keyring } from "./keyring.js";
import type { InvestigatorKey, TrustedInvestigator } from "./keys.js";

// Signed schedules. A schedule is an ActionBody with a ScheduleSpec, signed
// once like any action; it never runs as itself. Run n (from 1) is an action
// that agent and coordinator derive alike from the signed bytes and n: its id
// is a function of the schedule's id and n, its window is the schedule's n-th
// interval. So a coordinator can only pick which run to send; the agent checks
// that the run's window is now, and its replay guard (keyed by the derived id)
// that run n never ran before.

/** The shortest interval a schedule may have. */
export const MIN_EVERY_MS = 1000;
/** A schedule ends at most this long after its first run starts (an action's longest validity). */
export const MAX_SCHEDULE_MS = 30 * 86_400_000;
/** A schedule's first run may be this far from its creation. */
export const MAX_SCHEDULE_LEAD_MS = 30 * 86_400_000;
export const SCHEDULE_STOP_CONTEXT = Buffer.from("dragnet-schedule-stop-v1\n");

/** Refuses a body that is not a well-formed schedule: spec, window, modules. */
export function checkSchedule(body: ActionBody): { everyMs: number; runs: number } {
  const spec = body.schedule;
  if (!spec) throw new DragnetError(Codes.ACTION_INVALID, "the body is not a schedule");
  const refuse = (message: string): never => {
    throw new DragnetError(Codes.ACTION_INVALID, `schedule ${body.id.slice(0, 32)}: ${message}`);
  };
  if (!Number.isInteger(spec.everyMs) || spec.everyMs < MIN_EVERY_MS)
    refuse(`runs at most once a second (every ${spec.everyMs} ms)`);
  if (!Number.isInteger(spec.runs) || spec.runs < 1) refuse("has no run");
  if (body.expiresAtMs !== body.validFromMs + spec.everyMs * spec.runs) {
    refuse("its window is not exactly its runs × its interval");
  }
  if (body.expiresAtMs - body.validFromMs > MAX_SCHEDULE_MS) refuse("lasts more than 30 days");
  for (const [i, op] of body.operations.entries()) {
    // A change to hosts repeated by a clock: nobody signs that once for weeks.
    if (op.module && isResponseModule(op.module.$case)) {
      throw new DragnetError(
        Codes.ACTION_INVALID,
        `operation ${i + 1} (${op.module.$case}) is a response module: response modules cannot be scheduled`,
      );
    }
  }
  return { everyMs: spec.everyMs, runs: spec.runs };
}

/** Run n's window: [fromMs, toMs). */
export function runWindow(body: ActionBody, run: number): { fromMs: number; toMs: number } {
  const every = body.schedule?.everyMs ?? 0;
  const fromMs = body.validFromMs + (run - 1) * every;
  return { fromMs, toMs: fromMs + every };
}

/** The run whose window holds `now` (0 before the first, runs + 1 after the last). */
export function runAt(body: ActionBody, now: number): number {
  const spec = body.schedule;
  if (!spec || spec.everyMs <= 0) return 0;
  if (now < body.validFromMs) return 0;
  return Math.min(spec.runs + 1, Math.floor((now - body.validFromMs) / spec.everyMs) + 1);
}

/**
 * Run n's action id: a Dragnet id whose time part is the run's window start
 * and whose other 80 bits are SHA-256 of the schedule id and n.
 */
export function runActionId(scheduleId: string, run: number, fromMs: number): string {
  return idOf(fromMs, createHash("sha256").update(`dragnet-run\n${scheduleId}\n${run}`).digest());
}

/** Run n of a schedule as the action it is (checks n is one of the schedule's runs). */
export function runBody(schedule: ActionBody, run: number): ActionBody {
  const spec = schedule.schedule;
  if (!spec) throw new DragnetError(Codes.ACTION_INVALID, "the body is not a schedule");
  if (!Number.isInteger(run) || run < 1 || run > spec.runs) {
    throw new DragnetError(
      Codes.SCHEDULE,
      `schedule ${schedule.id} has runs 1 to ${spec.runs}; there is no run ${run}`,
    );
  }
  const { fromMs, toMs } = runWindow(schedule, run);
  return {
    ...schedule,
    id: runActionId(schedule.id, run, fromMs),
    name: `${schedule.name} #${run}`,
    validFromMs: fromMs,
    expiresAtMs: toMs,
    schedule: undefined,
  };
}

/** Refuses run n unless its window holds now (with the agent's clock tolerance). */
export function checkRunWindow(schedule: ActionBody, run: number, now: number, skewMs: number): void {
  const { fromMs, toMs } = runWindow(schedule, run);
  const span = `${new Date(fromMs).toISOString()} and ${new Date(toMs).toISOString()}`;
  if (now + skewMs < fromMs) {
    throw new DragnetError(
      Codes.NOT_YET_VALID,
      `run ${run} of schedule ${schedule.id} may start only between ${span}; now is before (${new Date(now).toISOString()})`,
    );
  }
  if (now - skewMs >= toMs) {
    throw new DragnetError(
      Codes.EXPIRED,
      `run ${run} of schedule ${schedule.id} may start only between ${span}; its window is over (now ${new Date(now).toISOString()})`,
    );
  }
}

export function signScheduleStop(body: ScheduleStopBody, key: InvestigatorKey): SignedScheduleStop {
  const bytes = Buffer.from(ScheduleStopBody.encode(body).finish());
  return {
    body: bytes,
    signature: {
      keyId: key.keyId,
      signature: sign(null, Buffer.concat([SCHEDULE_STOP_CONTEXT, bytes]), key.privateKey),
    },
  };
}

/** Checks a stop's signature against the keyring; returns the body and who signed it. */
export function verifyScheduleStop(
  stop: SignedScheduleStop | undefined,
  keyring: Keyring,
): { body: ScheduleStopBody; signer: TrustedInvestigator } {
  if (!stop || stop.body.length === 0 || stop.body.length > 4096 || !stop.signature) {
    throw new DragnetError(Codes.ACTION_INVALID, "the schedule stop carries no signed body");
  }
  const signer = keyring.get(stop.signature.keyId);
  if (!signer) {
    throw new DragnetError(
      Codes.SIG_UNKNOWN_KEY,
      `the schedule stop is signed by unknown key ${JSON.stringify(stop.signature.keyId.slice(0, 32))}`,
    );
  }
  const message = Buffer.concat([SCHEDULE_STOP_CONTEXT, stop.body]);
  if (
    stop.signature.signature.length !== 64 ||
    !verify(null, message, signer.publicKey, stop.signature.signature)
  ) {
    throw new DragnetError(
      Codes.SIG_INVALID,
      `the signature of ${signer.name} does not match the schedule stop`,
    );
  }
  let body: ScheduleStopBody;
  try {
    body = ScheduleStopBody.decode(stop.body);
  } catch (err) {
    throw new DragnetError(Codes.DECODE, `the schedule stop does not decode: ${(err as Error).message}`);
  }
  return { body, signer };
}
