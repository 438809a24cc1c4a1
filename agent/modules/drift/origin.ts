import { stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { DriftChange } from "../../../proto/mod.js";
import { digestFile, HASH_CHUNK } from "../host/digest-file.js";
import {
  loadPackageFiles,
  type PackageFiles,
  packagedDirectories,
  packageLabel,
  packageRoot,
} from "../host/package-files.js";
import { readSmallText } from "../host/small-file.js";

// Who changed a file, as the package database tells: a file whose new content
// hashes to what its package records was put there by the package manager (an
// upgrade: "package"); a packaged file that hashes to anything else was
// changed by someone else ("modified"); a file no package owns is "unowned".
// So a fleet's drift checks and alerts can set upgrades aside and keep the
// rest — what file integrity tools' users have long asked for.

/** How long origins wait for a running dpkg to finish, and how often they look. */
const DPKG_WAIT_MS = 120_000;
const DPKG_POLL_MS = 250;

/**
 * Whether dpkg holds its lock now (/proc/locks names the lock file's inode).
 * dpkg moves a package's new files in before it writes their checksums: read
 * meanwhile, an upgrade would look like tampering.
 */
async function dpkgRunning(root: string): Promise<boolean> {
  const inodes = new Set<string>();
  for (const lock of ["var/lib/dpkg/lock", "var/lib/dpkg/lock-frontend"]) {
    const st = await stat(join(root, lock)).catch(() => undefined);
    if (st) inodes.add(String(st.ino));
  }
  if (!inodes.size) return false;
  const locks = await readSmallText("/proc/locks", [], { optional: true, truncate: true });
  // "1: POSIX  ADVISORY  WRITE 4242 fe:00:2146730 0 EOF": device and inode after the pid.
  return !!locks
    ?.split("\n")
    .some((line) => inodes.has(/\s[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line)?.[1] ?? ""));
}

/** Waits (at most two minutes) while dpkg runs, so that what it is installing is told by its finished records. */
async function untilDpkgIdle(signal?: AbortSignal): Promise<void> {
  const root = packageRoot();
  const until = Date.now() + DPKG_WAIT_MS;
  while (Date.now() < until && (await dpkgRunning(root))) await sleep(DPKG_POLL_MS, undefined, { signal });
}

/** Up to this many changed files, the databases are searched for them rather than read whole. */
const SEARCH_AT_MOST = 256;

/** The file's digest in `algorithm`; undefined when it is gone again, not a regular file, or unreadable. */
function digestOf(path: string, algorithm: string): Promise<string | undefined> {
  return digestFile(path, [algorithm], Buffer.allocUnsafe(HASH_CHUNK)).then(
    (r) => r.digests[0],
    () => undefined,
  );
}

/**
 * Sets `origin` and `package` on each change to a regular file: "package"
 * when the file now hashes to its package's recorded digest, "modified" when
 * a package owns it and it does not (or it was removed while its package
 * still lists it, or only its mode or owner changed), "unowned" when no
 * package owns it. Directories and symlinks stay untagged: packages record no
 * digest for them.
 */
export async function tagOrigins(
  changes: DriftChange[],
  signal?: AbortSignal,
  files?: PackageFiles,
): Promise<void> {
  const isFile = (c: DriftChange) => c.after?.type === "file" || (!c.after && c.before?.type === "file");
  let concerned = changes.filter(isFile);
  if (!files) {
    await untilDpkgIdle(signal);
    // Most changes under watch are in directories no package has a file in: no search for those.
    const dirs = await packagedDirectories(signal);
    if (dirs) {
      for (const c of concerned) if (!dirs.has(dirname(c.path))) c.origin = "unowned";
      concerned = concerned.filter((c) => !c.origin);
    }
  }
  if (!concerned.length) return;
  const packages =
    files ??
    (await loadPackageFiles({
      only: concerned.length <= SEARCH_AT_MOST ? concerned.map((c) => c.path) : undefined,
      signal,
    }));
  for (const c of concerned) {
    const owned = packages.owner(c.path);
    if (!owned) {
      c.origin = "unowned";
      continue;
    }
    c.package = packageLabel(owned);
    c.origin = "modified";
    if (!c.after || !owned.digest || (!c.what.includes("content") && c.kind !== "added")) continue;
    // rpm records SHA-256 mostly, which the snapshot has already; dpkg records MD5.
    const now =
      owned.algorithm === "sha256" && c.after.sha256
        ? c.after.sha256
        : await digestOf(c.path, owned.algorithm);
    if (now === owned.digest) c.origin = "package";
  }
}
