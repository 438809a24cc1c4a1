import { lstat, readdir, readlink, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { MAX_TEXT_BYTES, readSmallText } from "../host/small-file.js";
import type { PERSISTENCE_KINDS } from "./check.js";

// What each source of persistence reports before the file facts (hash, owner,
// mtime) are added, and the few file helpers they share. Every path is a host
// path: under the root being examined when that is not "/" (a test's tree, a
// mounted image), with symlinks inside it resolved against that root.

export type Kind = (typeof PERSISTENCE_KINDS)[number];

export interface RawEntry {
  kind: Kind;
  /** The file that makes it start, as a host path. */
  path: string;
  name: string;
  command: string;
  schedule: string;
  state: string;
  user: string;
  flags: string[];
  /** The file whose content is hashed when `path` is a link resolved inside the root; none for masked units. */
  file?: string | null;
  /** A home's startup file: its /etc/skel original (host path), to flag an unchanged copy. */
  skel?: string;
}

export const entry = (kind: Kind, path: string, fields: Partial<RawEntry> = {}): RawEntry => ({
  kind,
  path,
  name: "",
  command: "",
  schedule: "",
  state: "",
  user: "",
  flags: [],
  ...fields,
});

/** The sources' view of the examined root. */
export interface Root {
  /** "/" or a directory. */
  dir: string;
  /** A host path for a path on the examined system. */
  at(path: string): string;
  /** The path on the examined system for a host path (the inverse of at). */
  inner(hostPath: string): string;
}

export function rootOf(dir: string): Root {
  const prefix = dir === "/" ? "" : dir.replace(/\/+$/, "");
  return {
    dir,
    at: (path) => (prefix ? join(prefix, path) : path),
    inner: (host) => (prefix && host.startsWith(prefix) ? host.slice(prefix.length) || "/" : host),
  };
}

/**
 * Where a symlink chain leads, resolved inside the root (an absolute target
 * is under the root, as it would be for the examined system): the final host
 * path, or undefined when a link is dangling or the chain is too long.
 */
export async function resolveInRoot(root: Root, hostPath: string): Promise<string | undefined> {
  let at = hostPath;
  for (let hops = 0; hops < 16; hops++) {
    const st = await lstat(at).catch(() => undefined);
    if (!st) return undefined;
    if (!st.isSymbolicLink()) return at;
    const target = await readlink(at);
    at = target.startsWith("/") ? root.at(target) : resolve(dirname(at), target);
  }
  return undefined;
}

/** The link's target as the examined system reads it ("/dev/null", "../foo.service"), or undefined. */
export const linkTarget = (path: string): Promise<string | undefined> =>
  readlink(path).catch(() => undefined);

export const isFile = (path: string): Promise<boolean> =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  );

/** A directory's entries, sorted; none when it is absent or unreadable (noted in errors when unreadable). */
export async function listDir(path: string, errors: string[]): Promise<string[]> {
  try {
    return (await readdir(path)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") errors.push(`${path}: ${(err as Error).message}`);
    return [];
  }
}

/** A small text file's content (its first `max` bytes), or undefined when absent (unreadable ones are noted in errors). */
export function readText(path: string, errors: string[], max = MAX_TEXT_BYTES): Promise<string | undefined> {
  return readSmallText(path, errors, { optional: true, maxBytes: max, truncate: true });
}
