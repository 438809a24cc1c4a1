import type { FileMatch, FileSearch } from "../../../proto/mod.js";
import type { CompiledSearch } from "./criteria.js";
import type { WalkOutput, WalkTally, WalkTask } from "./walk.js";
import { POOL_SIZE, searchWorkers } from "./worker-pool.js";

// One search of the file module, scheduled over the search workers: roots
// and the directories workers hand back are queued here, each directory is
// walked once per depth budget (nested roots), and the match limit is kept.

/** How long a worker walks before handing back what is left, so both workers stay busy. */
const TASK_BUDGET_MS = 15;
/**
 * Directories handed to a worker in one message at most. Each message costs a structured clone
 * each way and a wake-up: one per directory was ~12 % of a name search's worker time.
 */
const DIRS_PER_TASK = 32;
/** How long a cancelled search's workers get to notice before they are replaced. */
const ABANDON_AFTER_MS = 500;

export interface SearchTally extends WalkTally {
  truncated: boolean;
}

export interface SearchReport {
  error(message: string): void;
  warning(message: string): void;
}

let nextSearchId = 1;

export async function runSearch(
  search: CompiledSearch,
  source: FileSearch,
  index: number,
  signal: AbortSignal,
  tally: SearchTally,
  report: SearchReport,
): Promise<FileMatch[]> {
  const searchId = nextSearchId++;
  const matches: FileMatch[] = [];
  // Each directory's depth budget left when it was walked: met again with no
  // more left, it is skipped; with more, walked again for what lies deeper.
  const depthLeftWhenWalked = new Map<string, number>();
  const pending: WalkTask[] = search.roots
    .map((path) => ({ path, depth: 0, examinedToDepth: -1, matchesLeft: 0 }))
    .reverse();
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  // Read by the workers between files and between reads of a file.
  const abort = new SharedArrayBuffer(4);
  const stopWorkers = () => Atomics.store(new Int32Array(abort), 0, 1);

  const merge = (out: WalkOutput) => {
    for (const m of out.matches) {
      if (matches.length < search.matchLimit) matches.push(m);
      else tally.truncated = true;
    }
    for (const e of out.errors) report.error(e);
    for (const w of out.warnings) report.warning(w);
    for (const k of Object.keys(out.tally) as Array<keyof WalkTally>) tally[k] += out.tally[k];
    if (out.truncated) tally.truncated = true;
    for (let i = out.deferred.length - 1; i >= 0; i--) pending.push(out.deferred[i]!);
  };

  /** The task as a worker gets it; undefined when its directory was walked deep enough already. */
  const prepare = (task: WalkTask): WalkTask | undefined => {
    let examinedToDepth = task.examinedToDepth;
    // A batch of a directory's files (its directory walked already) is examined as it is; a
    // directory sent before and handed back unwalked (out of time) was checked when it was sent.
    if (!task.batch && !task.scheduled) {
      const left = search.maxDepth - task.depth;
      const before = depthLeftWhenWalked.get(task.path);
      if (before !== undefined && before >= left) return undefined;
      depthLeftWhenWalked.set(task.path, left);
      if (before !== undefined) examinedToDepth = Math.max(task.examinedToDepth, task.depth + before);
    }
    return { ...task, examinedToDepth, matchesLeft: search.matchLimit - matches.length, scheduled: true };
  };

  /** Sends the next pending task, with the plain directories queued after it (roots and batches go alone). */
  const dispatchNext = () => {
    const tasks: WalkTask[] = [];
    while (pending.length > 0 && tasks.length < DIRS_PER_TASK) {
      const next = pending.at(-1)!;
      const alone = next.batch !== undefined || next.depth === 0;
      if (alone && tasks.length > 0) break;
      pending.pop();
      const task = prepare(next);
      if (task) tasks.push(task);
      if (alone) break;
    }
    const [task, ...more] = tasks;
    if (!task) return;
    const p = searchWorkers
      .run({ searchId, search: source, index, task, more, budgetMs: TASK_BUDGET_MS, abort })
      .then(merge, (err: Error) => {
        failure ??= err;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };

  const aborted = new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
  while (pending.length > 0 || inFlight.size > 0) {
    if (signal.aborted) {
      stopWorkers();
      // A worker blocked in a read that never returns is replaced, so later searches are not queued behind it.
      const settled = await Promise.race([
        Promise.allSettled(inFlight).then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), ABANDON_AFTER_MS).unref()),
      ]);
      if (!settled) searchWorkers.abandon(searchId);
      throw signal.reason;
    }
    if (failure) break;
    if (matches.length >= search.matchLimit) {
      if (pending.length > 0) tally.truncated = true;
      pending.length = 0;
    }
    while (pending.length > 0 && inFlight.size < 2 * POOL_SIZE) dispatchNext();
    // Woken by a task's answer or by the abort: workers run at a lower priority, and on a busy
    // host their answer may be slow to come.
    if (inFlight.size > 0) await Promise.race([...inFlight, aborted]);
  }
  await Promise.allSettled(inFlight);
  stopWorkers();
  if (failure) throw failure;
  matches.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return matches;
}
