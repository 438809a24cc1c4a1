import { lstatSync, readlinkSync, realpathSync, type Stats } from "node:fs";
import { isAbsolute, normalize, sep } from "node:path";
import { Codes, DragnetError } from "../../common/mod.js";

// Checking module parameters that came over the network: one way to compile
// an investigator's regular expression, with one kind of refusal, and one
// reading of the paths they name.

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

/** Pseudo-filesystems: nothing there is a file to move or collect. */
const PSEUDO_ROOTS = ["/proc", "/sys", "/dev"];

const within = (path: string, root: string) =>
  path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);

/**
 * The regular file a response module may act on (quarantine, collect), or a
 * PARAMS refusal saying why not: not absolute, missing, a symlink (unless
 * `followSymlinks`: then what it points to), not a regular file, under /proc,
 * /sys or /dev, or one of the agent's own files (state, keys, credentials).
 */
export function responseFile(
  what: string,
  path: string,
  options: { followSymlinks: boolean; protectedPaths: readonly string[] },
): { path: string; stats: Stats } {
  const refuse = (m: string): never => {
    throw new DragnetError(Codes.PARAMS, `${what}: ${m}`);
  };
  const abs = absolutePath(path) ?? refuse(`"${path.slice(0, 200)}" is not an absolute path`);
  let real = abs;
  let stats: Stats;
  try {
    stats = lstatSync(abs);
    if (stats.isSymbolicLink()) {
      if (!options.followSymlinks) {
        refuse(
          `${abs} is a symlink (to ${readlinkSync(abs)}); it is not followed unless asked (--follow-symlinks)`,
        );
      }
      real = realpathSync(abs);
      stats = lstatSync(real);
    }
  } catch (err) {
    if (DragnetError.is(err)) throw err;
    return refuse(`${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (PSEUDO_ROOTS.some((r) => within(real, r)))
    refuse(`${real} is in ${real.split(sep)[1]} (not a file on disk)`);
  for (const p of options.protectedPaths) {
    if (within(real, p))
      refuse(
        `${real} is one of the agent's own files (${p}): its keys and credentials are never moved or sent`,
      );
  }
  if (!stats.isFile()) refuse(`${real} is not a regular file`);
  return { path: real, stats };
}
