import type { Dirent, Stats } from "node:fs";
import { lstat, readdir, readlink, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { FileMatch } from "../../../proto/mod.js";
import { type CompiledSearch, type CriterionKind, HASH_FIELD, type HashName, within } from "./criteria.js";
import { modeString } from "./mode-string.js";
import { readOnce } from "./read-once.js";

// One search of the file module: walk its roots, decide for each regular file
// (or symlink to one) whether it matches, cheapest checks first (name, then
// metadata, then one read for content and hashes), and report the matches.

/** Files examined at once: enough to keep both cores and the disk busy. */
const PARALLEL = 8;

export interface SearchTally {
  filesExamined: number;
  dirsWalked: number;
  openFailures: number;
  errorsTotal: number;
  truncated: boolean;
  filesRead: number;
  bytesRead: number;
  warningsTotal: number;
}

export interface SearchReport {
  error(message: string): void;
  warning(message: string): void;
}

function errno(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}` : String((err as Error).message ?? err);
}

type Verdict = "match" | "reject" | undefined;

export async function runSearch(
  search: CompiledSearch,
  signal: AbortSignal,
  tally: SearchTally,
  report: SearchReport,
): Promise<FileMatch[]> {
  const matches: FileMatch[] = [];
  const fail = (message: string) => {
    tally.errorsTotal++;
    report.error(message);
  };
  const warn = (message: string) => {
    tally.warningsTotal++;
    report.warning(message);
  };
  const checkCount =
    search.names.length +
    search.contents.length +
    search.sizes.length +
    search.modes.length +
    search.mtimes.length +
    search.hashes.size;

  /** One check's outcome under matchall / matchany, its kind inverted when asked (mismatch). */
  const verdict = (kind: CriterionKind, hit: boolean): Verdict => {
    const v = hit !== search.mismatch.has(kind);
    if (search.matchAny) return v ? "match" : undefined;
    return v ? undefined : "reject";
  };

  /** The first decisive outcome among checks of one kind. */
  const first = <T>(kind: CriterionKind, items: Iterable<T>, hit: (item: T) => boolean): Verdict => {
    for (const item of items) {
      const v = verdict(kind, hit(item));
      if (v) return v;
    }
    return undefined;
  };

  const read = async (path: string, size: number, hashes: HashName[], withContent: boolean) => {
    tally.filesRead++;
    const outcome = await readOnce(
      path,
      size,
      {
        contents: withContent ? search.contents : [],
        macroal: search.macroal,
        hashes,
        decompress: search.decompress,
      },
      signal,
    );
    tally.bytesRead += outcome.bytes;
    return outcome;
  };

  /** Decides one file; `followed` is the target's stats for a symlink to a file. */
  const consider = async (path: string, followed: Stats | undefined): Promise<void> => {
    tally.filesExamined++;
    const name = basename(path);
    let decided = first("name", search.names, (c) => c.re.test(name) !== c.invert);
    if (decided === "reject") return;

    let st: Stats;
    let target = "";
    try {
      st = followed ?? (await lstat(path));
      if (followed) target = await readlink(path);
    } catch (err) {
      fail(`${path}: ${errno(err)}`);
      return;
    }
    const mode = modeString(st);
    const age = Date.now() - st.mtimeMs;
    decided ??= first("size", search.sizes, (b) => within(b, st.size));
    decided ??= first("mode", search.modes, (c) => c.re.test(mode) !== c.invert);
    decided ??= first("mtime", search.mtimes, (b) => within(b, age));
    if (decided === "reject") return;

    const digests: Partial<Record<HashName, string>> = {};
    if (!decided && (search.contents.length > 0 || search.hashes.size > 0)) {
      // One read answers every content and hash criterion, and the hashes to report.
      let outcome: Awaited<ReturnType<typeof read>>;
      try {
        outcome = await read(path, st.size, [...search.report], true);
      } catch (err) {
        if (signal.aborted) throw err;
        tally.openFailures++;
        fail(`${path}: ${errno(err)}`);
        return;
      }
      Object.assign(digests, outcome.digests);
      decided = first("content", outcome.contentHits, (hit) => hit);
      for (const [h, wanted] of search.hashes) decided ??= verdict(h, wanted.has(digests[h]!));
    }
    // matchall: nothing rejected it. matchany: something hit, or there was nothing to check.
    const matched = search.matchAny ? decided === "match" || checkCount === 0 : decided !== "reject";
    if (!matched || matches.length >= search.matchLimit) {
      if (matched) tally.truncated = true;
      return;
    }
    const missing = [...search.report].filter((h) => digests[h] === undefined);
    if (missing.length > 0) {
      try {
        Object.assign(digests, (await read(path, st.size, missing, false)).digests);
      } catch (err) {
        if (signal.aborted) throw err;
        tally.openFailures++;
        fail(`${path}: ${errno(err)}`);
        return;
      }
    }
    const match: FileMatch = {
      search: search.label,
      path,
      size: st.size,
      mode,
      mtimeMs: Math.floor(st.mtimeMs),
      uid: st.uid,
      gid: st.gid,
      target,
      md5: "",
      sha1: "",
      sha256: "",
      sha384: "",
      sha512: "",
      sha3224: "",
      sha3256: "",
      sha3384: "",
      sha3512: "",
    };
    for (const [h, digest] of Object.entries(digests)) match[HASH_FIELD[h as HashName]] = digest;
    matches.push(match);
  };

  // A few files in flight at once; the first real failure (an abort) stops the search.
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const examine = async (path: string, followed: Stats | undefined) => {
    while (inFlight.size >= PARALLEL) await Promise.race(inFlight);
    if (failure) throw failure;
    const p = consider(path, followed).catch((err) => {
      failure ??= err;
    });
    inFlight.add(p);
    p.finally(() => inFlight.delete(p));
  };
  const full = () => {
    if (matches.length < search.matchLimit) return false;
    tally.truncated = true;
    return true;
  };

  /** A symlink met in a walk or as a root: followed to a file, reported for a directory. */
  const symlink = async (path: string) => {
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile()) await examine(path, st);
    else if (st?.isDirectory()) warn(`${path}: symlink to a directory, not descended`);
  };

  // Each directory's files are examined once even when roots nest; a directory
  // met again with more depth left is walked again for what lies deeper.
  const depthLeftWhenWalked = new Map<string, number>();
  for (const root of search.roots) {
    if (full()) break;
    let rootStats: Stats;
    try {
      rootStats = await lstat(root);
    } catch (err) {
      fail(`${root}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : errno(err)}`);
      continue;
    }
    if (rootStats.isFile()) {
      await examine(root, undefined);
      continue;
    }
    if (rootStats.isSymbolicLink()) {
      await symlink(root);
      continue;
    }
    if (!rootStats.isDirectory()) continue;
    const stack: Array<{ dir: string; depth: number }> = [{ dir: root, depth: 0 }];
    while (stack.length > 0) {
      if (signal.aborted) throw signal.reason;
      if (failure) throw failure;
      if (full()) break;
      const { dir, depth } = stack.pop()!;
      const left = search.maxDepth - depth;
      const before = depthLeftWhenWalked.get(dir);
      if (before !== undefined && before >= left) continue;
      depthLeftWhenWalked.set(dir, left);
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        tally.openFailures++;
        fail(`${dir}: ${errno(err)}`);
        continue;
      }
      tally.dirsWalked++;
      // Reverse so the stack pops subdirectories in directory order.
      for (let i = entries.length - 1; i >= 0; i--) {
        const entry = entries[i]!;
        if (entry.isDirectory() && depth < search.maxDepth) {
          stack.push({ dir: join(dir, entry.name), depth: depth + 1 });
        }
      }
      if (before !== undefined) continue;
      for (const entry of entries) {
        if (full()) break;
        if (entry.isFile()) await examine(join(dir, entry.name), undefined);
        else if (entry.isSymbolicLink()) await symlink(join(dir, entry.name));
      }
    }
  }
  await Promise.all(inFlight);
  if (failure) throw failure;
  matches.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return matches;
}
