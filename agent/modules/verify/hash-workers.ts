import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

// Hashing ~100k packaged files is CPU work (MD5 over gigabytes) and many small
// reads: on the main thread, each read is a round trip through libuv's pool
// and each digest holds up heartbeats. Here two worker threads (at most: the
// agent is a guest on its host) stat, read and hash synchronously, in batches,
// at a lower priority. Their code is a string (no file to start a worker from
// in the single-executable agent, and nothing to bundle).

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const fs = require("node:fs");
const os = require("node:os");
const crypto = require("node:crypto");
try { os.setPriority(Math.min(19, os.getPriority() + 10)); } catch {}
const buffer = Buffer.allocUnsafe(1 << 20);
const seen = new Map();
function digest(path, algorithm) {
  const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const hash = crypto.createHash(algorithm);
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
    return hash.digest("hex");
  } finally {
    fs.closeSync(fd);
  }
}
parentPort.on("message", (batch) => {
  const out = [];
  for (const [path, algorithm] of batch) {
    let st;
    try {
      st = fs.lstatSync(path);
    } catch (err) {
      out.push({ error: err.code || "EIO", message: err.message });
      continue;
    }
    const stat = { file: st.isFile(), size: st.size, mtimeMs: Math.round(st.mtimeMs) };
    if (!algorithm || !stat.file) { out.push(stat); continue; }
    const key = st.dev + ":" + st.ino + ":" + algorithm;
    try {
      let d = seen.get(key);
      if (d === undefined) { d = digest(path, algorithm); seen.set(key, d); }
      out.push({ ...stat, digest: d });
    } catch (err) {
      out.push({ ...stat, error: err.code || "EIO", message: err.message });
    }
  }
  parentPort.postMessage(out);
});
`;

/** One path to look at: its digest in `algorithm`, or only its lstat when the algorithm is empty. */
export type HashJob = readonly [path: string, algorithm: string];

export interface HashOutcome {
  /** lstat found a regular file. */
  file?: boolean;
  size?: number;
  mtimeMs?: number;
  digest?: string;
  /** errno code ("ENOENT"…) of the lstat or the read, with its message. */
  error?: string;
  message?: string;
}

const WORKERS = Math.max(1, Math.min(2, availableParallelism()));
/** Paths per message: big enough that messaging costs nothing, small enough to stop soon when aborted. */
const BATCH = 256;

/** lstat and hash each job on worker threads; outcomes in the jobs' order. Rejects when `signal` aborts. */
export async function hashInWorkers(jobs: readonly HashJob[], signal: AbortSignal): Promise<HashOutcome[]> {
  const outcomes: HashOutcome[] = new Array(jobs.length);
  let next = 0;
  const workers = Array.from(
    { length: Math.min(WORKERS, Math.ceil(jobs.length / BATCH)) },
    () => new Worker(WORKER_SOURCE, { eval: true, resourceLimits: { maxOldGenerationSizeMb: 128 } }),
  );
  // One abort listener for the run, removed after it: a command's signal outlives the run.
  let stop: (reason: unknown) => void = () => {};
  const onAbort = () => stop(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const all = Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            let start = 0;
            const send = () => {
              if (signal.aborted) return reject(signal.reason);
              if (next >= jobs.length) return resolve();
              start = next;
              next = Math.min(jobs.length, next + BATCH);
              worker.postMessage(jobs.slice(start, next));
            };
            worker.on("message", (out: HashOutcome[]) => {
              for (let i = 0; i < out.length; i++) outcomes[start + i] = out[i]!;
              send();
            });
            worker.on("error", reject);
            worker.on("exit", (code) => reject(new Error(`a hashing worker stopped (exit code ${code})`)));
            send();
          }),
      ),
    );
    await new Promise<void>((resolve, reject) => {
      stop = reject;
      if (signal.aborted) reject(signal.reason);
      all.then(() => resolve(), reject);
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
    for (const w of workers) {
      w.removeAllListeners("exit");
      void w.terminate();
    }
  }
  return outcomes;
}
