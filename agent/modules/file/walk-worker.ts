import { getPriority, setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import type { FileSearch } from "../../../proto/mod.js";
import { compileSearch } from "./criteria.js";
import { scanBuffer } from "./literal-search.js";
import { CHUNK } from "./read-once.js";
import { Walker, type WalkOutput, type WalkTask } from "./walk.js";

// A search worker thread: runs walk tasks one at a time, with blocking file
// calls (much cheaper here than a round trip to libuv's thread pool per call),
// while the agent's main thread stays free for NATS and other commands.

export interface WalkRequest {
  searchId: number;
  search: FileSearch;
  index: number;
  task: WalkTask;
  /** Directories to walk after `task`, within the same budget (see Walker.run). */
  more: WalkTask[];
  budgetMs: number;
  /** One Int32 the scheduler sets to 1 when the command is cancelled or out of time (shared, not copied). */
  abort: SharedArrayBuffer;
}

export type WalkReply = { ok: true; out: WalkOutput } | { ok: false; error: string };

/** Compiled searches by id; a few are kept since several commands may search at once. */
const walkers = new Map<number, Walker>();
/** Files are read into it; in the literal scan's memory, which searches it in place. */
const buffer = scanBuffer(CHUNK);

// Scans yield to the host's own work (and to the agent's main thread, which
// heartbeats): on Linux this lowers only this thread's priority, by 10 nice levels.
try {
  setPriority(Math.min(19, getPriority() + 10));
} catch {
  // Not permitted here (or not supported): the scan runs at the agent's priority.
}

parentPort!.on("message", (req: WalkRequest) => {
  let reply: WalkReply;
  try {
    let walker = walkers.get(req.searchId);
    if (!walker) {
      const flag = new Int32Array(req.abort);
      walker = new Walker(compileSearch(req.search, req.index), buffer, () => Atomics.load(flag, 0) !== 0);
      walkers.set(req.searchId, walker);
      if (walkers.size > 16) walkers.delete(walkers.keys().next().value!);
    }
    reply = { ok: true, out: walker.run(req.task, req.budgetMs, req.more) };
  } catch (err) {
    reply = { ok: false, error: (err as Error).message ?? String(err) };
  }
  parentPort!.postMessage(reply);
});
