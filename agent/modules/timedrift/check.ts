import { Codes, DragnetError } from "../../../common/mod.js";
import type { TimedriftParams } from "../../../proto/mod.js";

/** Found past this difference between the agent's clock and the coordinator's, unless the action says otherwise. */
export const DEFAULT_MAX_DRIFT_MS = 2000;
/** A day: past that a threshold finds nothing any clock check would care about. */
export const MAX_MAX_DRIFT_MS = 86_400_000;

export function checkTimedrift(p: TimedriftParams): void {
  const max = p.maxDriftMs;
  if (max === undefined) return;
  // Two clocks always differ by something: a zero threshold would find every host.
  if (max < 1 || max > MAX_MAX_DRIFT_MS)
    throw new DragnetError(
      Codes.PARAMS,
      `timedrift: max drift is 1 ms to ${MAX_MAX_DRIFT_MS} ms (a day), not ${max} ms`,
    );
}
