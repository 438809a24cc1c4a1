import { lstatSync, readlinkSync, realpathSync, type Stats } from "node:fs";
import { sep } from "node:path";
import { Codes, DragnetError } from "../../common/mod.js";
import { absolutePath } from "./check-kit.js";

// The one file a response module acts on (quarantine, collect), read from
// the disk as the command runs.

/** Pseudo-filesystems: nothing there is a file to move or collect. */
const PSEUDO_ROOTS = ["/proc", "/sys", "/dev"];

/** A path with every link resolved, or itself when it cannot be (it does not exist). */
function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

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
    }
    // Every component resolved, not only the last: a directory that links elsewhere
    // (/tmp/link -> the agent's directory) must not carry a path past the checks below.
    real = realpathSync(abs);
    stats = lstatSync(real);
  } catch (err) {
    if (DragnetError.is(err)) throw err;
    return refuse(`${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (PSEUDO_ROOTS.some((r) => within(real, r)))
    refuse(`${real} is in ${real.split(sep)[1]} (not a file on disk)`);
  for (const p of options.protectedPaths) {
    if (within(real, p) || within(real, realOrSelf(p)))
      refuse(
        `${real} is one of the agent's own files (${p}): its keys and credentials are never moved or sent`,
      );
  }
  if (!stats.isFile()) refuse(`${real} is not a regular file`);
  return { path: real, stats };
}
