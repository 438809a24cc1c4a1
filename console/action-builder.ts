import { Codes, DragnetError, newId, parseDuration, parseTarget, TargetParseError } from "../common/mod.js";
import type { ActionBody, Operation } from "../proto/api.js";

// Options every command that sends an action shares, and the ActionBody they
// make. The target is parsed here, before signing, so a typo is shown with its
// position instead of being refused later.

export interface ActionOptions {
  target: string;
  expires: string;
  timeout: string;
  name?: string;
  description?: string;
  /** The incident the action belongs to (the notebook records it). */
  incidentId?: string;
}

export const DEFAULT_EXPIRES = "10m";
export const DEFAULT_TIMEOUT = "60s";

export function checkTarget(target: string): void {
  try {
    parseTarget(target);
  } catch (err) {
    if (err instanceof TargetParseError) {
      throw new DragnetError(Codes.TARGET_PARSE, `${err.message}\n${err.pointer()}`);
    }
    throw err;
  }
}

export function buildAction(
  opts: ActionOptions,
  defaultName: string,
  operations: Operation[],
  now = Date.now(),
): ActionBody {
  checkTarget(opts.target);
  const expiresIn = parseDuration(opts.expires);
  const timeout = parseDuration(opts.timeout);
  if (expiresIn < 1000) throw new DragnetError(Codes.PARAMS, "--expires must be at least 1s");
  if (timeout < 100 || timeout > 6 * 3_600_000)
    throw new DragnetError(Codes.PARAMS, "--timeout must be between 100ms and 6h");
  return {
    id: newId(now),
    schedule: undefined,
    name: opts.name ?? defaultName,
    target: opts.target,
    operations,
    validFromMs: now,
    expiresAtMs: now + expiresIn,
    timeoutMs: timeout,
    incidentId: opts.incidentId ?? "",
    description: opts.description ?? "",
    createdAtMs: now,
  };
}
