import {
  closeSync,
  constants,
  type Dirent,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  realpathSync,
  type Stats,
  statfsSync,
  statSync,
} from "node:fs";
import { basename } from "node:path";
import type { FileMatch } from "../../../proto/mod.js";
import { type CompiledSearch, type CriterionKind, HASH_FIELD, type HashName, within } from "./criteria.js";
import { modeString } from "./mode-string.js";
import { LineTooLongError, readOnce, SearchAbortedError } from "./read-once.js";

// The synchronous half of a file search, run on a search worker thread: walk
// part of a tree, decide for each regular file (or symlink to one) whether it
// matches — cheapest checks first (name, then metadata, then one read for
// content and hashes) — and hand back what it found and what is left to walk.

export interface WalkTask {
  /** A root (depth 0, may be a file or a symlink) or a directory met in a walk. */
  path: string;
  depth: number;
  /** Directories down to this depth were searched before (nested roots): only deeper ones' files are examined. */
  examinedToDepth: number;
  /** Stop after this many matches (what the search's limit leaves). */
  matchesLeft: number;
  /**
   * Files of `path` (already walked) left to examine, by name: what a task ran out of time
   * on, handed back so that the other worker can take part of a large directory.
   */
  batch?: { files: string[]; links: string[] };
  /** The scheduler checked this directory against what was walked before (see search.ts). */
  scheduled?: boolean;
}

/** At most this many names in one batch handed back (each is sent to a worker once). */
const BATCH = 256;

export interface WalkTally {
  filesExamined: number;
  dirsWalked: number;
  openFailures: number;
  errorsTotal: number;
  filesRead: number;
  bytesRead: number;
  warningsTotal: number;
}

export interface WalkOutput {
  matches: FileMatch[];
  errors: string[];
  warnings: string[];
  /** Directories not walked here: out of time, or another root of the search (the scheduler decides). */
  deferred: WalkTask[];
  /** The match limit stopped this task with files left to examine. */
  truncated: boolean;
  tally: WalkTally;
}

type Verdict = "match" | "reject" | undefined;

/** A directory's path with one trailing slash: its entries' paths are this plus their names. */
const prefixOf = (dir: string) => (dir.endsWith("/") ? dir : `${dir}/`);

const OPEN_FIRST = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * Filesystems whose files are not read: reading can block for ever
 * (/proc/kmsg, tracefs' trace_pipe) or take data from its owner (/proc/kmsg
 * hands kernel messages to whoever reads first). Names and metadata are
 * still searched. sysfs is read: its attributes are small and harmless.
 */
const PSEUDO_FILESYSTEMS = new Set([
  0x9fa0, // proc
  0x64626720, // debugfs
  0x74726163, // tracefs
  0x73636673, // securityfs
  0x42494e4d, // binfmt_misc
]);
function errno(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}` : String((err as Error).message ?? err);
}

/** Per device (st.dev): one statfs per filesystem, not per directory. */
const pseudoByDevice = new Map<number, boolean>();

/** Whether `path` (whose stats are `st`) is on one of those filesystems. */
function isPseudoFilesystem(path: string, st: Stats): boolean {
  let pseudo = pseudoByDevice.get(st.dev);
  if (pseudo === undefined) {
    try {
      pseudo = PSEUDO_FILESYSTEMS.has(Number(statfsSync(path).type));
    } catch {
      pseudo = false;
    }
    pseudoByDevice.set(st.dev, pseudo);
  }
  return pseudo;
}

export class Walker {
  private readonly checkCount: number;
  /** Whether files are read (content, hashes): then a file can take long. */
  private readonly reads: boolean;
  /** Files are read, and no metadata check could spare a read: open before fstat (see consider). */
  private readonly openFirst: boolean;
  /** The task being run: when it started, its budget, and what it has done so far. */
  private clock = { started: 0, budgetMs: 0, progress: 0 };
  /** The search's roots: a walk defers to a root's own task what lies under it. */
  private readonly roots: Set<string>;

  constructor(
    private readonly search: CompiledSearch,
    private readonly buffer: Buffer,
    /** Set by the scheduler when the command is cancelled or out of time. */
    private readonly aborted: () => boolean,
  ) {
    this.roots = new Set(search.roots);
    this.reads = search.contents.length > 0 || search.hashes.size > 0 || search.report.size > 0;
    this.openFirst =
      this.reads && search.sizes.length === 0 && search.modes.length === 0 && search.mtimes.length === 0;
    this.checkCount =
      search.names.length +
      search.contents.length +
      search.sizes.length +
      search.modes.length +
      search.mtimes.length +
      search.hashes.size;
  }

  /**
   * Walks from `task`, then the directories of `more` (none a root or a batch: each task is a
   * message each way, so a worker is handed several at once), until done, out of matches, or
   * past `budgetMs`; the rest comes back deferred.
   */
  run(task: WalkTask, budgetMs: number, more: readonly WalkTask[] = []): WalkOutput {
    const out: WalkOutput = {
      matches: [],
      errors: [],
      warnings: [],
      deferred: [],
      truncated: false,
      tally: {
        filesExamined: 0,
        dirsWalked: 0,
        openFailures: 0,
        errorsTotal: 0,
        filesRead: 0,
        bytesRead: 0,
        warningsTotal: 0,
      },
    };
    this.clock = { started: performance.now(), budgetMs, progress: 0 };
    if (task.batch) {
      this.entries(task, prefixOf(task.path), task.batch.files, task.batch.links, out);
      return out;
    }
    // A stack: `task` (and what it finds) first, then `more` in its order.
    const stack: WalkTask[] = [];
    for (let i = more.length - 1; i >= 0; i--) stack.push(more[i]!);
    if (task.depth === 0) this.root(task, out, stack);
    else stack.push(task);
    while (stack.length > 0) {
      if (this.aborted()) throw new SearchAbortedError();
      if (out.matches.length >= task.matchesLeft || this.outOfTime()) {
        if (out.matches.length >= task.matchesLeft) out.truncated = true;
        for (const dir of stack.reverse()) out.deferred.push(dir);
        break;
      }
      this.directory(stack.pop()!, out, stack);
      this.clock.progress++;
    }
    return out;
  }

  private fail(out: WalkOutput, message: string): void {
    out.tally.errorsTotal++;
    if (out.errors.length < this.search.maxErrors) out.errors.push(message);
  }

  private warn(out: WalkOutput, message: string): void {
    out.tally.warningsTotal++;
    if (out.warnings.length < this.search.maxErrors) out.warnings.push(message);
  }

  private root(task: WalkTask, out: WalkOutput, stack: WalkTask[]): void {
    let st: Stats;
    try {
      st = lstatSync(task.path);
    } catch (err) {
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      this.fail(out, `${task.path}: ${missing ? "does not exist" : errno(err)}`);
      return;
    }
    if (st.isFile()) {
      if (task.examinedToDepth < 0) this.consider(task.path, undefined, st, out);
    } else if (st.isSymbolicLink()) {
      // A root given as a link to a directory (/bin on merged-/usr systems) is searched, as find -H does.
      const target = statSync(task.path, { throwIfNoEntry: false });
      if (target?.isDirectory()) stack.push(task);
      else if (task.examinedToDepth < 0) this.symlink(task.path, out);
    } else if (st.isDirectory()) {
      stack.push(task);
    }
  }

  private symlink(path: string, out: WalkOutput): void {
    let st: Stats | undefined;
    try {
      st = statSync(path);
    } catch {
      return; // broken, or a loop: find -xtype f does not list it either
    }
    if (st.isFile()) this.consider(path, st, undefined, out);
    else if (st.isDirectory()) this.warn(out, `${path}: symlink to a directory, not descended`);
  }

  /**
   * Whether the task's time is up. Every task makes progress first (its directory walked, or a
   * file of its batch examined): a directory handed back unwalked would be taken for one walked.
   */
  private outOfTime(): boolean {
    const c = this.clock;
    return c.progress > 0 && performance.now() - c.started > c.budgetMs;
  }

  private directory(task: WalkTask, out: WalkOutput, stack: WalkTask[]): void {
    let entries: Dirent[];
    try {
      entries = readdirSync(task.path, { withFileTypes: true });
    } catch (err) {
      out.tally.openFailures++;
      this.fail(out, `${task.path}: ${errno(err)}`);
      return;
    }
    out.tally.dirsWalked++;
    // Paths are built only for what gets past the name (most files, in a search by name, do not).
    const prefix = prefixOf(task.path);
    if (task.depth < this.search.maxDepth) {
      // Reverse so the stack pops subdirectories in directory order.
      for (let i = entries.length - 1; i >= 0; i--) {
        const entry = entries[i]!;
        if (!entry.isDirectory()) continue;
        // Met here, not yet checked by the scheduler (whatever the parent's task was).
        const sub: WalkTask = { ...task, path: prefix + entry.name, depth: task.depth + 1, scheduled: false };
        // Another root of this search: the scheduler knows whether it was walked already.
        if (this.roots.has(sub.path)) out.deferred.push(sub);
        else stack.push(sub);
      }
    }
    if (task.depth <= task.examinedToDepth) return;
    const files: string[] = [];
    const links: string[] = [];
    for (const entry of entries) {
      if (entry.isFile()) files.push(entry.name);
      else if (entry.isSymbolicLink()) links.push(entry.name);
    }
    this.entries(task, prefix, files, links, out);
  }

  /**
   * Examines the regular files and symlinks (by name) of the directory `task.path`. Out of
   * time, it hands the rest back in batches (task.batch) for whichever worker is free.
   */
  private entries(task: WalkTask, prefix: string, files: string[], links: string[], out: WalkOutput): void {
    const nestedRoots = this.roots.size > 1;
    const count = files.length + links.length;
    for (let i = 0; i < count; i++) {
      // The clock is read before each file that will be read, every 64 otherwise (names are cheap).
      if ((this.reads || (i & 63) === 0) && this.outOfTime()) {
        this.handBack(
          task,
          files.slice(Math.min(i, files.length)),
          links.slice(Math.max(0, i - files.length)),
          out,
        );
        return;
      }
      this.clock.progress++;
      const file = i < files.length;
      const name = file ? files[i]! : links[i - files.length]!;
      // The name is tested first, on the entry: most files of a search by name go no further.
      const byName = file ? this.nameVerdict(name) : undefined;
      if (byName === "reject") {
        // Counted as examined, unless it is another root's (see below).
        if (!nestedRoots || !this.roots.has(prefix + name)) out.tally.filesExamined++;
        continue;
      }
      const path = prefix + name;
      // A file that is also a root of this search is examined by that root's task.
      if (this.roots.has(path)) continue;
      if (out.matches.length >= task.matchesLeft) {
        out.truncated = true;
        return;
      }
      if (file) this.consider(path, undefined, undefined, out, name, byName);
      else this.symlink(path, out);
    }
  }

  /** The files of a directory left to examine, back to the scheduler in batches of at most BATCH names. */
  private handBack(task: WalkTask, files: string[], links: string[], out: WalkOutput): void {
    for (let at = 0; at < files.length; at += BATCH)
      out.deferred.push({ ...task, batch: { files: files.slice(at, at + BATCH), links: [] } });
    for (let at = 0; at < links.length; at += BATCH)
      out.deferred.push({ ...task, batch: { files: [], links: links.slice(at, at + BATCH) } });
  }

  /** What the name criteria alone decide (matchall: one that fails rejects; matchany: one that hits matches). */
  private nameVerdict(name: string): Verdict {
    return this.first("name", this.search.names, (c) => c.re.test(name) !== c.invert);
  }

  /** One check's outcome under matchall / matchany, its kind inverted when asked (mismatch). */
  private verdict(kind: CriterionKind, hit: boolean): Verdict {
    const v = hit !== this.search.mismatch.has(kind);
    if (this.search.matchAny) return v ? "match" : undefined;
    return v ? undefined : "reject";
  }

  /** The first decisive outcome among checks of one kind. */
  private first<T>(kind: CriterionKind, items: Iterable<T>, hit: (item: T) => boolean): Verdict {
    for (const item of items) {
      const v = this.verdict(kind, hit(item));
      if (v) return v;
    }
    return undefined;
  }

  private read(
    path: string,
    size: number,
    hashes: HashName[],
    withContent: boolean,
    out: WalkOutput,
    fd?: number,
  ) {
    out.tally.filesRead++;
    const outcome = readOnce(
      path,
      size,
      {
        contents: withContent ? this.search.contents : [],
        macroal: this.search.macroal,
        hashes,
        decompress: this.search.decompress,
      },
      this.buffer,
      this.aborted,
      fd,
    );
    out.tally.bytesRead += outcome.bytes;
    return outcome;
  }

  /** Decides one file; `followed` is the target's stats for a symlink to a file. */
  private consider(
    path: string,
    followed: Stats | undefined,
    known: Stats | undefined,
    out: WalkOutput,
    name = basename(path),
    /** The name's verdict when the caller tested it already (null: not tested). */
    byName: Verdict | null = null,
  ): void {
    out.tally.filesExamined++;
    const decided = byName === null ? this.nameVerdict(name) : byName;
    if (decided === "reject") return;

    let st: Stats;
    let target = "";
    // A file met in a directory that will be read whatever its metadata says is opened first,
    // then fstat'ed: one path lookup instead of two (lstat, then open). Not following a link,
    // nor waiting on a FIFO, should the name have changed hands since the directory was read.
    let fd: number | undefined;
    try {
      if (!followed && !known && this.openFirst && this.wantsRead(decided)) {
        fd = openSync(path, OPEN_FIRST);
        st = fstatSync(fd);
        if (!st.isFile()) {
          closeSync(fd);
          return;
        }
      } else {
        st = followed ?? known ?? lstatSync(path);
        // No longer the regular file the directory listed (a FIFO would block the read).
        if (!st.isFile()) return;
      }
      // Where the link leads, resolved: the file that was read and hashed.
      if (followed) target = realpathSync(path);
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      this.fail(out, `${path}: ${errno(err)}`);
      return;
    }
    try {
      this.decide(path, st, target, decided, out, fd);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /** Whether a file whose checks so far came to `decided` is read (content, hashes, hashes to report). */
  private wantsRead(decided: Verdict): boolean {
    const search = this.search;
    return (!decided && (search.contents.length > 0 || search.hashes.size > 0)) || search.report.size > 0;
  }

  /** The rest of consider(), on the file's stats (and the file, when it was opened first). */
  private decide(
    path: string,
    st: Stats,
    target: string,
    decidedByName: Verdict,
    out: WalkOutput,
    fd: number | undefined,
  ): void {
    const search = this.search;
    let decided = decidedByName;
    const mode = modeString(st);
    const age = Date.now() - st.mtimeMs;
    decided ??= this.first("size", search.sizes, (b) => within(b, st.size));
    decided ??= this.first("mode", search.modes, (c) => c.re.test(mode) !== c.invert);
    decided ??= this.first("mtime", search.mtimes, (b) => within(b, age));
    if (decided === "reject") return;

    const digests: Partial<Record<HashName, string>> = {};
    // The target's filesystem, for a link (st is the target's stats then).
    if (this.wantsRead(decided) && isPseudoFilesystem(target || path, st)) {
      this.warn(out, `${path}: on a pseudo filesystem (proc, debugfs, tracefs), not read`);
      return;
    }
    try {
      if (!decided && (search.contents.length > 0 || search.hashes.size > 0)) {
        // One read answers every content and hash criterion, and the hashes to report.
        const outcome = this.read(path, st.size, [...search.report], true, out, fd);
        Object.assign(digests, outcome.digests);
        decided = this.first("content", outcome.contentHits, (hit) => hit);
        for (const [h, wanted] of search.hashes) decided ??= this.verdict(h, wanted.has(digests[h]!));
      }
      // matchall: nothing rejected it. matchany: something hit, or there was nothing to check.
      const matched = search.matchAny ? decided === "match" || this.checkCount === 0 : decided !== "reject";
      if (!matched) return;
      const missing = [...search.report].filter((h) => digests[h] === undefined);
      if (missing.length > 0)
        Object.assign(digests, this.read(path, st.size, missing, false, out, fd).digests);
    } catch (err) {
      if (err instanceof SearchAbortedError) throw err;
      if (!(err instanceof LineTooLongError)) out.tally.openFailures++;
      this.fail(out, `${path}: ${errno(err)}`);
      return;
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
    out.matches.push(match);
  }
}
