import { Codes, DragnetError } from "../../common/mod.js";

// Checking module parameters that came over the network: one way to compile
// an investigator's regular expression, with one kind of refusal.

const MAX_PATTERN = 4096;

/**
 * Compiles `source`, or throws DragnetError(PARAMS) naming what it was for
 * (`label`, e.g. "process name regex") and why it does not compile.
 */
export function userRegex(label: string, source: string, flags = ""): RegExp {
  if (source.length > MAX_PATTERN) {
    throw new DragnetError(Codes.PARAMS, `${label} is longer than ${MAX_PATTERN} characters`);
  }
  try {
    return new RegExp(source, flags);
  } catch (err) {
    throw new DragnetError(
      Codes.PARAMS,
      `${label} ${JSON.stringify(source.slice(0, 200))}: ${(err as Error).message}`,
    );
  }
}

/** userRegex for an optional filter: none when the source is empty. */
export function optionalRegex(label: string, source: string, flags = ""): RegExp | undefined {
  return source ? userRegex(label, source, flags) : undefined;
}
