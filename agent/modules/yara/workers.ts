import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { YaraRuleMatch } from "./engine.js";

// Files are scanned by worker threads, each with the engine loaded and the
// rules compiled: the addon's asynchronous scans run one at a time (measured:
// two in flight take as long as one), while two threads scanning files
// synchronously take half the time. The walk stays on the main thread and
// hands out files a few at a time.

/** Worker threads: the machine's cores, at most two (scans yield to the host's work). */
const THREADS = Math.max(1, Math.min(2, availableParallelism()));
/** Files handed to a worker at once: fewer messages, still an even share. */
const BATCH = 32;

// CommonJS, evaluated: a single executable has no file to start a worker from.
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
// Scans yield to the host's own work, as the file module's do: on Linux this
// lowers only this thread's priority, by 10 nice levels.
try {
  const os = require("node:os");
  os.setPriority(Math.min(19, os.getPriority() + 10));
} catch {}
const engine = { exports: {} };
process.dlopen(engine, workerData.addon);
let scanner;
try {
  scanner = engine.exports.compile(workerData.source);
  // Read, not mapped: measured faster here, and a file cut while mapped cannot fault the agent.
  scanner.setUseMmap(false);
  parentPort.postMessage({ ready: true });
} catch (err) {
  parentPort.postMessage({ ready: false, error: String(err && err.message) });
}
const { lstatSync } = require("node:fs");
parentPort.on("message", (paths) => {
  const out = [];
  for (const path of paths) {
    try {
      // Regular files only (a symlink is not followed), and none over the cap.
      const st = lstatSync(path);
      if (!st.isFile()) out.push({ path, skipped: true });
      else if (st.size > workerData.maxFileBytes) out.push({ path, size: st.size, overCap: true });
      else out.push({ path, size: st.size, matches: scanner.scanFile(path) });
    } catch (err) {
      out.push({ path, error: String(err && err.message).slice(0, 300) });
    }
  }
  parentPort.postMessage(out);
});
`;

export interface FileScan {
  path: string;
  size?: number;
  matches?: YaraRuleMatch[];
  /** Over the size cap: not read. */
  overCap?: boolean;
  /** Not a regular file (any more). */
  skipped?: boolean;
  error?: string;
}

export class YaraWorkers {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { path: string; done: (r: FileScan) => void }[] = [];
  private readonly waiting = new Map<Worker, ((r: FileScan) => void)[]>();
  private failure: Error | undefined;

  private constructor() {}

  /** Starts the threads, each compiling the rules; rejects with the compiler's words if they cannot. */
  static async start(addon: string, source: string, maxFileBytes: number): Promise<YaraWorkers> {
    const pool = new YaraWorkers();
    await Promise.all(
      Array.from({ length: THREADS }, async () => {
        const w = new Worker(WORKER, {
          eval: true,
          workerData: { addon, source, maxFileBytes },
          // The engine's memory is its own (native); the thread's JavaScript needs little.
          resourceLimits: { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 16 },
        });
        pool.workers.push(w);
        const ready = await new Promise<{ ready: boolean; error?: string }>((resolve, reject) => {
          w.once("message", resolve);
          w.once("error", reject);
        });
        if (!ready.ready) throw new Error(ready.error);
        w.on("message", (out: FileScan[]) => pool.finished(w, out));
        w.on("error", (err) => {
          pool.failure = err;
          for (const done of pool.waiting.get(w) ?? []) done({ path: "", error: err.message });
        });
        pool.idle.push(w);
      }),
    ).catch(async (err) => {
      await pool.stop();
      throw err;
    });
    return pool;
  }

  /** Files queued but not yet scanned: the walk waits when this grows. */
  get backlog(): number {
    return this.queue.length;
  }

  scan(path: string): Promise<FileScan> {
    if (this.failure) return Promise.resolve({ path, error: this.failure.message });
    return new Promise((done) => {
      this.queue.push({ path, done });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const w = this.idle.pop()!;
      const batch = this.queue.splice(0, BATCH);
      this.waiting.set(
        w,
        batch.map((b) => b.done),
      );
      w.postMessage(batch.map((b) => b.path));
    }
  }

  private finished(w: Worker, out: FileScan[]): void {
    const done = this.waiting.get(w) ?? [];
    this.waiting.delete(w);
    for (const [i, r] of out.entries()) done[i]?.(r);
    this.idle.push(w);
    this.dispatch();
  }

  async stop(): Promise<void> {
    for (const q of this.queue.splice(0)) q.done({ path: q.path, error: "stopped" });
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
