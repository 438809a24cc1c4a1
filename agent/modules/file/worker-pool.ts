import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { WalkOutput } from "./walk.js";
import type { WalkReply, WalkRequest } from "./walk-worker.js";

// The search workers: one per core (at most two — an agent is a guest on its
// host), started when a search needs them and stopped after 30 quiet seconds
// (their heaps, and the memory the C library held for them, go back to the host).
// Workers start from code in a string: the built agent carries it
// (scripts/build.mjs defines __DRAGNET_FILE_WORKER__), since a single
// executable has no file to start a worker from; from source (tests,
// benchmarks) walk-worker.ts is bundled on first use, the same way.

declare const __DRAGNET_FILE_WORKER__: string | undefined;

const IDLE_MS = 30_000;
export const POOL_SIZE = Math.max(1, Math.min(2, availableParallelism()));

interface Job {
  request: WalkRequest;
  resolve(out: WalkOutput): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  /** Sent and not answered yet, oldest first; replies come back in order. */
  jobs: Job[];
}

/** Jobs sent ahead to each worker, so it starts the next as soon as it answers one. */
const DEPTH = 2;

let sourceBuilt: string | undefined;

/** The worker's code: carried by the built agent; from source, bundled here the way the build does it. */
function workerSource(): string {
  if (typeof __DRAGNET_FILE_WORKER__ === "string") return __DRAGNET_FILE_WORKER__;
  if (!sourceBuilt) {
    const esbuild = createRequire(import.meta.url)("esbuild") as typeof import("esbuild");
    sourceBuilt = esbuild.buildSync({
      entryPoints: [fileURLToPath(new URL("./walk-worker.ts", import.meta.url))],
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      write: false,
      logLevel: "error",
    }).outputFiles[0]!.text;
  }
  return sourceBuilt;
}

/** The heap a search worker may use (the agent's `commandMemoryMb`); past it the worker is stopped, not the agent. */
let memoryMb = 256;

export function configureSearchWorkers(options: { memoryMb: number }): void {
  memoryMb = options.memoryMb;
}

function startWorker(): Worker {
  return new Worker(workerSource(), {
    eval: true,
    resourceLimits: {
      maxOldGenerationSizeMb: memoryMb,
      maxYoungGenerationSizeMb: Math.min(32, memoryMb / 4),
    },
  });
}

class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private idleTimer?: NodeJS.Timeout;

  run(request: WalkRequest): Promise<WalkOutput> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    clearTimeout(this.idleTimer);
    while (this.queue.length > 0) {
      // An idle worker first, then a new one, then one with room in its inbox.
      let slot = this.slots.find((s) => s.jobs.length === 0);
      if (!slot && this.slots.length < POOL_SIZE) slot = this.spawn();
      slot ??= this.slots.find((s) => s.jobs.length < DEPTH);
      if (!slot) return;
      const job = this.queue.shift()!;
      slot.jobs.push(job);
      slot.worker.ref();
      slot.worker.postMessage(job.request);
    }
    if (this.slots.every((s) => s.jobs.length === 0)) {
      this.idleTimer = setTimeout(() => this.stopAll(), IDLE_MS).unref();
    }
  }

  private spawn(): Slot {
    const slot: Slot = { worker: startWorker(), jobs: [] };
    slot.worker.on("message", (reply: WalkReply) => {
      const job = slot.jobs.shift();
      if (slot.jobs.length === 0) slot.worker.unref();
      if (job) {
        if (reply.ok) job.resolve(reply.out);
        else job.reject(new Error(reply.error));
      }
      this.pump();
    });
    const lost = (err: Error) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const job of slot.jobs.splice(0)) job.reject(err);
      this.pump();
    };
    slot.worker.on("error", (err: Error & { code?: string }) =>
      lost(
        err.code === "ERR_WORKER_OUT_OF_MEMORY"
          ? new Error(
              `the search needed more than ${memoryMb} MB of memory and was stopped (the agent's commandMemoryMb limit)`,
            )
          : err,
      ),
    );
    slot.worker.on("exit", (code) => lost(new Error(`a search worker stopped (exit code ${code})`)));
    slot.worker.unref();
    this.slots.push(slot);
    return slot;
  }

  /**
   * Gives up on the workers running jobs of a cancelled search: they are
   * dropped from the pool (and asked to stop) so new jobs go to fresh ones. A
   * thread blocked in a system call stays blocked until that call returns.
   */
  abandon(searchId: number): void {
    for (const slot of [...this.slots]) {
      if (!slot.jobs.some((j) => j.request.searchId === searchId)) continue;
      this.slots.splice(this.slots.indexOf(slot), 1);
      for (const job of slot.jobs.splice(0)) {
        // Another search's job waiting behind it goes to a fresh worker instead.
        if (job.request.searchId === searchId) job.reject(new Error("search worker abandoned"));
        else this.queue.unshift(job);
      }
      slot.worker.removeAllListeners("message");
      void slot.worker.terminate();
    }
    this.pump();
  }

  private stopAll(): void {
    for (const slot of this.slots.splice(0)) void slot.worker.terminate();
  }
}

/** One pool for the process: searches of concurrent commands share the cores. */
export const searchWorkers = new WorkerPool();
