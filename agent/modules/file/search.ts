import { createHash } from "node:crypto";
import { createReadStream, type Dirent, type Stats } from "node:fs";
import { lstat, readdir, readlink, stat } from "node:fs/promises";
import { basename, isAbsolute, join, normalize } from "node:path";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { FileMatch, FileSearch } from "../../../proto/mod.js";
import { modeString } from "./mode-string.js";

// One named search of the file module: walk its roots, match each regular file
// (or symlink to one) against the criteria, cheapest first (name, then
// metadata, then content hashes), and report what matched.

export const FILE_DEFAULTS = {
  /** Deep enough for any real tree; bounded so a loop of bind mounts cannot run forever. */
  maxDepth: 64,
  matchLimit: 1000,
  maxErrors: 20,
} as const;

const MAX_ROOTS = 64;
const MAX_PATTERN = 4096;
const LIMITS = { matchLimit: 1_000_000, maxDepth: 1024, maxErrors: 100_000 };
const MAX_CRITERIA = 256;
const HASH_KINDS = new Set(["sha256"]);

interface NameCriterion {
  re: RegExp;
  invert: boolean;
  source: string;
}

export interface CompiledSearch {
  label: string;
  roots: string[];
  names: NameCriterion[];
  sha256: Set<string>;
  maxDepth: number;
  matchLimit: number;
  maxErrors: number;
  hashes: Set<string>;
}

function paramsError(label: string, message: string): DragnetError {
  return new DragnetError(Codes.PARAMS, `file search "${label}": ${message}`);
}

function compileRegex(label: string, source: string, what: string): NameCriterion {
  if (source.length > MAX_PATTERN)
    throw paramsError(label, `${what} is longer than ${MAX_PATTERN} characters`);
  const invert = source.startsWith("!");
  const pattern = invert ? source.slice(1) : source;
  try {
    return { re: new RegExp(pattern), invert, source };
  } catch (err) {
    throw paramsError(label, `${what} ${JSON.stringify(source)} does not compile: ${(err as Error).message}`);
  }
}

/** Validates a search and prepares it; throws DragnetError(PARAMS) saying what is wrong. */
export function compileSearch(search: FileSearch, index: number): CompiledSearch {
  const label = search.label || `s${index + 1}`;
  if (search.paths.length === 0) throw paramsError(label, "no path to search (give at least one)");
  if (search.paths.length > MAX_ROOTS) throw paramsError(label, `more than ${MAX_ROOTS} paths`);
  const roots: string[] = [];
  for (const p of search.paths) {
    if (!isAbsolute(p) || p.includes("\0") || p.length > 4096) {
      throw paramsError(label, `path ${JSON.stringify(p.slice(0, 200))} is not an absolute path`);
    }
    const n = normalize(p);
    if (!roots.includes(n)) roots.push(n);
  }
  if (search.names.length + search.sha256.length > MAX_CRITERIA) {
    throw paramsError(label, `more than ${MAX_CRITERIA} criteria`);
  }
  const names = search.names.map((n) => compileRegex(label, n, "name regex"));
  const sha256 = new Set<string>();
  for (const h of search.sha256) {
    if (!/^[0-9a-fA-F]{64}$/.test(h))
      throw paramsError(label, `${JSON.stringify(h)} is not a SHA-256 (64 hex digits)`);
    sha256.add(h.toLowerCase());
  }
  const opts = search.options;
  const hashes = new Set<string>();
  for (const h of opts?.returnHashes ?? []) {
    if (!HASH_KINDS.has(h))
      throw paramsError(label, `cannot return hash "${h}" (known: ${[...HASH_KINDS].join(", ")})`);
    hashes.add(h);
  }
  if (sha256.size) hashes.add("sha256");
  // uint32 on the wire: a negative number sent by a buggy or hostile client
  // arrives as a huge one, so upper bounds catch it.
  const bounded = (v: number | undefined, name: string, min: number, max: number, dflt: number) => {
    const n = v ?? dflt;
    if (n < min || n > max) throw paramsError(label, `${name} must be between ${min} and ${max} (got ${n})`);
    return n;
  };
  const matchLimit = bounded(opts?.matchLimit, "matchlimit", 1, LIMITS.matchLimit, FILE_DEFAULTS.matchLimit);
  const maxDepth = bounded(opts?.maxDepth, "maxdepth", 0, LIMITS.maxDepth, FILE_DEFAULTS.maxDepth);
  const maxErrors = bounded(opts?.maxErrors, "maxerrors", 0, LIMITS.maxErrors, FILE_DEFAULTS.maxErrors);
  return {
    label,
    roots,
    names,
    sha256,
    maxDepth,
    matchLimit,
    maxErrors,
    hashes,
  };
}

export interface SearchTally {
  filesExamined: number;
  dirsWalked: number;
  openFailures: number;
  errorsTotal: number;
  truncated: boolean;
}

async function sha256Of(path: string, signal: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  const stream = createReadStream(path, { highWaterMark: 1 << 20, signal });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function errno(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}` : String((err as Error).message ?? err);
}

export async function runSearch(
  search: CompiledSearch,
  signal: AbortSignal,
  tally: SearchTally,
  onError: (message: string) => void,
): Promise<FileMatch[]> {
  const matches: FileMatch[] = [];
  const fail = (message: string) => {
    tally.errorsTotal++;
    onError(message);
  };

  const consider = async (path: string, depthStats: Stats | undefined, isLink: boolean): Promise<void> => {
    tally.filesExamined++;
    const name = basename(path);
    for (const c of search.names) {
      if (c.re.test(name) === c.invert) return;
    }
    let st: Stats;
    let target = "";
    try {
      st = depthStats ?? (isLink ? await stat(path) : await lstat(path));
      if (isLink) target = await readlink(path);
    } catch (err) {
      fail(`${path}: ${errno(err)}`);
      return;
    }
    let sha256 = "";
    if (search.hashes.has("sha256")) {
      try {
        sha256 = await sha256Of(path, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        tally.openFailures++;
        fail(`${path}: ${errno(err)}`);
        return;
      }
      if (search.sha256.size && !search.sha256.has(sha256)) return;
    }
    matches.push({
      search: search.label,
      path,
      size: st.size,
      mode: modeString(st),
      mtimeMs: Math.floor(st.mtimeMs),
      uid: st.uid,
      gid: st.gid,
      sha256,
      target,
    });
  };

  for (const root of search.roots) {
    if (matches.length >= search.matchLimit) break;
    let rootStats: Stats;
    try {
      rootStats = await lstat(root);
    } catch (err) {
      fail(`${root}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : errno(err)}`);
      continue;
    }
    if (rootStats.isFile()) {
      await consider(root, rootStats, false);
      continue;
    }
    if (rootStats.isSymbolicLink()) {
      const st = await stat(root).catch(() => undefined);
      if (st?.isFile()) await consider(root, st, true);
      continue;
    }
    if (!rootStats.isDirectory()) continue;
    const stack: Array<{ dir: string; depth: number }> = [{ dir: root, depth: 0 }];
    while (stack.length > 0) {
      if (signal.aborted) throw signal.reason;
      if (matches.length >= search.matchLimit) {
        tally.truncated = true;
        break;
      }
      const { dir, depth } = stack.pop()!;
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        tally.openFailures++;
        fail(`${dir}: ${errno(err)}`);
        continue;
      }
      tally.dirsWalked++;
      // Reverse so the stack pops entries in directory order.
      for (let i = entries.length - 1; i >= 0; i--) {
        const entry = entries[i]!;
        const path = join(dir, entry.name);
        if (entry.isDirectory()) {
          if (depth + 1 <= search.maxDepth) stack.push({ dir: path, depth: depth + 1 });
        }
      }
      for (const entry of entries) {
        if (matches.length >= search.matchLimit) {
          tally.truncated = true;
          break;
        }
        const path = join(dir, entry.name);
        if (entry.isFile()) {
          await consider(path, undefined, false);
        } else if (entry.isSymbolicLink()) {
          // Symlinks to files are followed; symlinked directories are not descended.
          const st = await stat(path).catch(() => undefined);
          if (st?.isFile()) await consider(path, st, true);
        }
      }
    }
  }
  return matches;
}
