import { isAbsolute, normalize, sep } from "node:path";
import { Codes, DragnetError } from "../../common/mod.js";
import type { ModuleName, ParamsOf } from "../../proto/mod.js";

// Checking module parameters that came over the network — by each agent
// before it runs anything, and by the console before it signs: one way to
// compile an investigator's regular expression, with one kind of refusal, and
// one reading of the paths they name. Pure: no file is touched here, so the
// console can carry every module's check without any agent code.

/** Each module's parameter check, by module (what checks.gen.ts holds). */
export type ModuleChecks = { readonly [N in ModuleName]: (params: ParamsOf<N>) => void };

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

/**
 * An absolute path, normalised and without a trailing separator, or undefined
 * when `path` is not one (relative, holding NUL, over 4096 characters).
 */
export function absolutePath(path: string): string | undefined {
  if (!isAbsolute(path) || path.includes("\0") || path.length > 4096) return undefined;
  const n = normalize(path);
  return n.length > 1 && n.endsWith(sep) ? n.slice(0, -1) : n;
}
