import { type FSWatcher, watch as fsWatch, lstatSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Codes, DragnetError, newId } from "../../../common/mod.js";
import { Alert, DriftChange, type WatchInfo } from "../../../proto/mod.js";
import type { ModuleHost, ModuleService } from "../registry.js";
import { compare } from "./compare.js";
import { tagOrigins } from "./origin.js";
import { type SnapshotEntry, takeSnapshot } from "./snapshot.js";
import { FORMAT_VERSION, loadSnapshotFile, type SnapshotHeader, saveSnapshotFile } from "./snapshot-file.js";

// Persistent watches: the agent keeps each watch's reference state in its
// state directory (so a watch survives restarts, and a change made while the
// agent was down is reported when it comes back), is told of changes by
// inotify (fs.watch on every directory under watch, and on the parent of each
// watched path so a replaced or recreated root is seen), re-examines only
// what a notification names, and rescans everything now and then as a safety
// net for what notifications miss (queue overflow, inotify limits, a
// directory created between a notification and its own watcher). Each change
// becomes an Alert carrying the same description as `drift check`.

/** How long notifications gather before they are examined: an editor's save is several events. */
const SETTLE_MS = 150;
/** Directories per watch given an inotify watch; past it, changes there are found by the rescan. */
const MAX_NOTIFIED_DIRS = 8192;

export interface WatchLimits {
  /** Directories per watch given an inotify watch (the kernel's budget is per user, often 8,192 to 65,536 in all). */
  maxNotifiedDirs: number;
}
/**
 * The reference state is written back at most this long after an alert, and
 * never more often than 20 times as long as the last write took: a big tree's
 * state is hundreds of MB, and rewriting it on every alert would stall the
 * agent. An agent killed in between repeats those changes when it restarts.
 */
const SAVE_AFTER_MS = 2000;
/** Alerts travel in one NATS message: room for the envelope under the 1 MiB limit. */
const MAX_ALERT_BYTES = 512 * 1024;
export const MAX_WATCHES = 32;

export interface WatchSpec {
  name: string;
  paths: string[];
  excludes: string[];
  maxEntries: number;
  maxContentBytes: number;
  rescanSeconds: number;
  actionId: string;
}

interface WatchHeader extends SnapshotHeader {
  rescanSeconds: number;
  actionId: string;
  alertsSent: number;
  lastAlertAtMs: number;
}

type DetectedBy = "notify" | "rescan" | "restart";

/** The changes that fit in one alert, in order; the rest are counted. */
function boundChanges(changes: DriftChange[]): { kept: DriftChange[]; omitted: number } {
  let bytes = 0;
  let n = 0;
  for (; n < changes.length; n++) {
    bytes += DriftChange.encode(changes[n]!).finish().length + 8;
    if (bytes > MAX_ALERT_BYTES) break;
  }
  return { kept: changes.slice(0, n), omitted: changes.length - n };
}

/** Whether some directory above `path` is in `set`. */
function hasAncestorIn(path: string, set: Set<string>): boolean {
  for (let p = path, up = dirname(p); up !== p; p = up, up = dirname(up)) if (set.has(up)) return true;
  return false;
}

class Watch {
  private readonly excludes: RegExp[];
  /**
   * Directory watchers by directory, with the inode watched (a directory
   * removed and made again under the same name needs a new watcher). A root's
   * parent is watched for that root's name only.
   */
  private readonly watchers = new Map<string, { w: FSWatcher; ino: number }>();
  private readonly unnotified = new Set<string>();
  private dirty = new Set<string>();
  private settleTimer?: NodeJS.Timeout;
  private saveTimer?: NodeJS.Timeout;
  private lastSaveMs = 0;
  private rescanTimer?: NodeJS.Timeout;
  private queue: Promise<void> = Promise.resolve();
  private readonly stopping = new AbortController();
  private lastRescanAtMs = 0;
  private errors: string[] = [];

  constructor(
    private readonly header: WatchHeader,
    private reference: Map<string, SnapshotEntry>,
    private readonly file: string,
    private readonly host: ModuleHost,
    private readonly limits: WatchLimits,
  ) {
    this.excludes = header.excludes.map((s) => new RegExp(s));
  }

  get name(): string {
    return this.header.name;
  }

  /** Starts notifications and the periodic rescan; `resumed` also compares with the state kept on disk now. */
  start(resumed: boolean): void {
    // Directories first: a root's parent that is itself under watch (overlapping paths) gets a full watcher.
    this.syncWatchers();
    for (const root of this.header.paths) {
      if (root !== "/") this.notify(dirname(root), basename(root));
    }
    this.rescanTimer = setInterval(
      () => this.enqueue(() => this.rescan("rescan")),
      this.header.rescanSeconds * 1000,
    );
    this.rescanTimer.unref();
    if (resumed) this.enqueue(() => this.rescan("restart"));
  }

  async stop(): Promise<void> {
    this.stopping.abort(new DragnetError(Codes.AGENT_LOST, "the watch is stopping"));
    clearInterval(this.rescanTimer);
    clearTimeout(this.settleTimer);
    for (const { w } of this.watchers.values()) w.close();
    this.watchers.clear();
    await this.queue;
    if (this.saveTimer) this.save();
  }

  info(): WatchInfo {
    return {
      name: this.header.name,
      paths: this.header.paths,
      excludes: this.header.excludes,
      createdAtMs: this.header.createdAtMs,
      actionId: this.header.actionId,
      rescanSeconds: this.header.rescanSeconds,
      entries: this.reference.size,
      directoriesNotified: [...this.watchers.keys()].filter((k) => this.reference.get(k)?.type === "dir")
        .length,
      directoriesUnnotified: this.unnotified.size,
      alertsSent: this.header.alertsSent,
      lastAlertAtMs: this.header.lastAlertAtMs,
      lastRescanAtMs: this.lastRescanAtMs,
      errors: this.errors.slice(0, 20),
    };
  }

  /** One piece of work at a time: notifications and rescans never interleave on the reference state. */
  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(async () => {
      if (this.stopping.signal.aborted) return;
      try {
        await work();
      } catch (err) {
        if (!this.stopping.signal.aborted)
          this.host.log.warn("drift watch failed a pass", { watch: this.name, error: err });
      }
    });
  }

  /** Watches one directory; `only` restricts it to one name in it (a root's parent). */
  private notify(dir: string, only?: string): void {
    if (this.watchers.has(dir)) return;
    try {
      const ino = lstatSync(dir).ino;
      const w = fsWatch(dir, { persistent: false }, (_event, filename) => {
        const name = filename?.toString();
        if (only !== undefined && name !== only) return;
        this.changed(name ? join(dir, name) : dir);
      });
      w.on("error", () => {
        // The directory went away (or the watch broke): the parent's event or the rescan accounts for it.
        w.close();
        this.watchers.delete(dir);
        this.changed(dir);
      });
      this.watchers.set(dir, { w, ino });
      this.unnotified.delete(dir);
    } catch {
      // ENOENT for a root's missing parent, ENOSPC past the inotify limit: the rescan covers it.
      this.unnotified.add(dir);
    }
  }

  /** Every directory under watch has a watcher, and no watcher outlives its directory. */
  private syncWatchers(): Set<string> {
    const parents = new Set(this.header.paths.map((p) => dirname(p)));
    const wanted = new Set<string>();
    for (const [path, e] of this.reference) if (e.type === "dir") wanted.add(path);
    for (const [dir, { w }] of this.watchers) {
      if (!wanted.has(dir) && !parents.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of this.unnotified) if (!wanted.has(dir)) this.unnotified.delete(dir);
    const added = new Set<string>();
    let used = 0;
    for (const dir of this.watchers.keys()) if (wanted.has(dir)) used++;
    for (const dir of wanted) {
      if (this.watchers.has(dir)) continue;
      if (used >= this.limits.maxNotifiedDirs) {
        this.unnotified.add(dir);
        continue;
      }
      this.notify(dir);
      if (this.watchers.has(dir)) {
        added.add(dir);
        used++;
      }
    }
    return added;
  }

  private changed(path: string): void {
    this.dirty.add(path);
    this.settleTimer ??= setTimeout(() => {
      this.settleTimer = undefined;
      this.enqueue(() => this.examineDirty());
    }, SETTLE_MS);
  }

  /** Re-examines what notifications named (each path and what is under it), and alerts on what changed. */
  private async examineDirty(): Promise<void> {
    const named = this.dirty;
    this.dirty = new Set();
    // A path under another one being re-examined is covered by it.
    const paths = [...named].filter((p) => !hasAncestorIn(p, named)).sort();
    const changes: DriftChange[] = [];
    for (const path of paths) {
      const before = new Map<string, SnapshotEntry>();
      const old = this.reference.get(path);
      if (old) before.set(path, old);
      if (old?.type === "dir") {
        const prefix = path === "/" ? path : `${path}/`;
        for (const [k, v] of this.reference) if (k.startsWith(prefix)) before.set(k, v);
      }
      const snap = await takeSnapshot({
        paths: [path],
        excludes: this.excludes,
        maxEntries: Math.max(0, this.header.maxEntries - this.reference.size + before.size),
        maxContentBytes: this.header.maxContentBytes,
        // What was named is read again; what is under it only when size, mtime or ctime moved.
        reuse: { get: (p) => (p === path ? undefined : this.reference.get(p)) },
        signal: this.stopping.signal,
      });
      for (const k of before.keys()) this.reference.delete(k);
      for (const [k, v] of snap.entries) this.reference.set(k, v);
      for (const c of compare(before, snap.entries, "before")) changes.push(c);
      this.dropStaleWatchers(path);
    }
    // A directory that appeared may have gained entries before its own watcher existed: look once more.
    for (const dir of this.syncWatchers()) this.changed(dir);
    if (changes.length > 0) await this.alert(changes, "notify");
  }

  /** A directory removed (and perhaps made again): its watchers, and those under it, watch nothing now. */
  private dropStaleWatchers(path: string): void {
    const watched = this.watchers.get(path);
    if (!watched) return;
    let ino: number | undefined;
    try {
      ino = lstatSync(path).ino;
    } catch {
      // gone
    }
    if (ino === watched.ino) return;
    const prefix = path === "/" ? path : `${path}/`;
    for (const [dir, { w }] of this.watchers) {
      if (dir === path || dir.startsWith(prefix)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
  }

  private async rescan(detectedBy: DetectedBy): Promise<void> {
    const snap = await takeSnapshot({
      paths: this.header.paths,
      excludes: this.excludes,
      maxEntries: this.header.maxEntries,
      maxContentBytes: this.header.maxContentBytes,
      reuse: this.reference,
      signal: this.stopping.signal,
    });
    const changes = compare(this.reference, snap.entries, "before");
    this.reference = snap.entries;
    this.lastRescanAtMs = Date.now();
    this.errors = snap.errors;
    this.header.skipped = snap.skipped;
    this.syncWatchers();
    if (changes.length > 0) await this.alert(changes, detectedBy);
  }

  private async alert(changes: DriftChange[], detectedBy: DetectedBy): Promise<void> {
    try {
      await tagOrigins(changes, this.stopping.signal);
    } catch (err) {
      // An alert without origins beats no alert.
      this.host.log.warn("drift: package database not read for origins", { watch: this.name, error: err });
    }
    const { agentId, hostname } = this.host.self();
    const { kept, omitted } = boundChanges(changes);
    const atMs = Date.now();
    this.host.alert(
      Alert.fromPartial({
        id: newId(atMs),
        agentId,
        hostname,
        atMs,
        source: "drift",
        watch: this.name,
        actionId: this.header.actionId,
        detectedBy,
        changes: kept,
        changesOmitted: omitted,
      }),
    );
    this.header.alertsSent++;
    this.header.lastAlertAtMs = atMs;
    // Between passes, never in the middle of one: what is saved has been alerted.
    this.saveTimer ??= setTimeout(
      () => this.enqueue(async () => this.save()),
      Math.max(SAVE_AFTER_MS, 20 * this.lastSaveMs),
    );
  }

  /** Writes the reference state as it is now: what a restarted agent compares with. */
  save(): void {
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const started = performance.now();
    try {
      saveSnapshotFile(this.file, this.header, this.reference);
      this.lastSaveMs = performance.now() - started;
    } catch (err) {
      this.host.log.error("drift watch state not saved", { watch: this.name, error: err });
    }
  }
}

/** One agent's watches: loaded from its state directory at start, changed by watch_start and watch_stop. */
export class DriftWatches implements ModuleService {
  private readonly watches = new Map<string, Watch>();
  private readonly dir: string;

  constructor(
    private readonly host: ModuleHost,
    private readonly limits: WatchLimits = { maxNotifiedDirs: MAX_NOTIFIED_DIRS },
  ) {
    this.dir = join(host.stateDir, "drift-watches");
  }

  private fileOf(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  async start(): Promise<void> {
    let files: string[] = [];
    try {
      files = readdirSync(this.dir).filter((f) => f.endsWith(".json"));
    } catch {
      return; // none yet
    }
    for (const f of files) {
      try {
        const stored = loadSnapshotFile<WatchHeader>(join(this.dir, f));
        if (!stored) continue;
        const { entries, ...header } = stored;
        const watch = new Watch(header, new Map(entries), join(this.dir, f), this.host, this.limits);
        this.watches.set(header.name, watch);
        watch.start(true);
      } catch (err) {
        this.host.log.error("drift watch not resumed", { file: f, error: err });
      }
    }
    if (this.watches.size > 0)
      this.host.log.info("drift watches resumed", { watches: [...this.watches.keys()] });
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.watches.values()].map((w) => w.stop()));
    this.watches.clear();
  }

  /** Installs (or replaces) a watch: its reference state is the present. */
  async add(spec: WatchSpec, signal: AbortSignal): Promise<WatchInfo> {
    if (!this.watches.has(spec.name) && this.watches.size >= MAX_WATCHES) {
      throw new DragnetError(
        Codes.PARAMS,
        `drift: this agent already has ${MAX_WATCHES} watches; stop one first`,
      );
    }
    const snap = await takeSnapshot({ ...spec, excludes: spec.excludes.map((s) => new RegExp(s)), signal });
    await this.watches.get(spec.name)?.stop();
    const header: WatchHeader = {
      version: FORMAT_VERSION,
      name: spec.name,
      createdAtMs: Date.now(),
      paths: spec.paths,
      excludes: spec.excludes,
      maxEntries: spec.maxEntries,
      maxContentBytes: spec.maxContentBytes,
      skipped: snap.skipped,
      rescanSeconds: spec.rescanSeconds,
      actionId: spec.actionId,
      alertsSent: 0,
      lastAlertAtMs: 0,
    };
    const watch = new Watch(header, snap.entries, this.fileOf(spec.name), this.host, this.limits);
    watch.save();
    this.watches.set(spec.name, watch);
    watch.start(false);
    return { ...watch.info(), errors: snap.errors.slice(0, 20) };
  }

  async remove(name: string): Promise<WatchInfo> {
    const watch = this.watches.get(name);
    if (!watch) {
      throw new DragnetError(
        Codes.PARAMS,
        `drift: no watch named "${name}" on this agent (it has: ${[...this.watches.keys()].join(", ") || "none"})`,
      );
    }
    await watch.stop();
    this.watches.delete(name);
    rmSync(this.fileOf(name), { force: true });
    return watch.info();
  }

  list(): WatchInfo[] {
    return [...this.watches.values()].map((w) => w.info()).sort((a, b) => a.name.localeCompare(b.name));
  }
}
