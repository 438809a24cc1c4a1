import type { Logger } from "../common/mod.js";
import {
  emptyWriteBatch,
  type Store,
  type StoredAction,
  type StoredAgent,
  type StoredCommand,
  type StoredResult,
  type WriteBatch,
} from "./store/store.js";

// Gathers writes and applies them in one transaction every few milliseconds
// (or sooner when many are waiting): a sweep of thousands of results costs a
// handful of commits instead of thousands. Later writes of the same row win.
// The store answers asynchronously: one batch is applied at a time, in order,
// and what is written while one is applied goes with the next.

export class WriteBatcher {
  private agents = new Map<string, StoredAgent>();
  private actions: StoredAction[] = [];
  private commands = new Map<string, StoredCommand>();
  private results: StoredResult[] = [];
  private completed: WriteBatch["completed"] = [];
  private audits: WriteBatch["audit"] = [];
  private alerts: WriteBatch["alerts"] = [];
  private evidenceItems: WriteBatch["evidence"] = [];
  private committed: Array<() => void> = [];
  private timer?: NodeJS.Timeout;
  private immediate?: NodeJS.Immediate;
  private failures = 0;
  private size = 0;
  /** The last write asked for (each starts once the one before it has ended). */
  private tail: Promise<void> = Promise.resolve();
  /** A flush waiting for its turn: flushes asked for meanwhile join it. */
  private queued?: Promise<void>;
  /** Closed with the store: what is still written (a handler that was awaiting it) waits for no timer. */
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly intervalMs = 20,
    private readonly maxPending = 2000,
  ) {}

  agent(a: StoredAgent): void {
    this.agents.set(a.id, { ...a });
    this.added();
  }
  action(a: StoredAction): void {
    this.actions.push(a);
    this.added();
  }
  command(c: StoredCommand): void {
    this.commands.set(c.id, { ...c });
    this.added();
  }
  result(r: StoredResult): void {
    this.results.push(r);
    this.added();
  }
  audit(entry: WriteBatch["audit"][number]): void {
    this.audits.push(entry);
    this.added();
  }
  evidence(e: WriteBatch["evidence"][number]): void {
    this.evidenceItems.push(e);
    this.added();
  }
  alert(a: WriteBatch["alerts"][number]): void {
    this.alerts.push(a);
    this.added();
  }
  complete(actionId: string, atMs: number): void {
    this.completed.push({ actionId, atMs });
    this.added();
  }

  /** Runs `fn` once everything written so far is committed (watchers hear of a result only once it is stored). */
  afterCommit(fn: () => void): void {
    this.committed.push(fn);
    this.schedule(this.intervalMs);
  }

  private added(): void {
    // Never flush synchronously here: everything one message handler writes
    // (a result and its command's new state) must land in the same transaction.
    if (++this.size >= this.maxPending && !this.immediate && !this.closed) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.immediate = setImmediate(() => this.flushSafely());
      return;
    }
    this.schedule(this.intervalMs);
  }

  private schedule(delayMs: number): void {
    if (!this.closed) this.timer ??= setTimeout(() => this.flushSafely(), delayMs);
  }

  /** Timer-driven flush: a failing store is logged and retried (write() does both), never thrown into the event loop. */
  private flushSafely(): void {
    this.flush().catch(() => undefined);
  }

  /**
   * Commits `part` now, after everything gathered before it, in a transaction
   * of its own; rejects if it could not be stored and then keeps none of it. For
   * writes whose failure the caller must report (a submitted action is either
   * stored or refused, never committed later by a retry).
   */
  commitNow(part: Partial<WriteBatch>): Promise<void> {
    return this.serially(async () => {
      await this.write();
      await this.store.apply({ ...emptyWriteBatch(), ...part });
    });
  }

  /**
   * Applies everything gathered so far; reads that must see it await this
   * first. Flushes asked for while one waits its turn join it.
   */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
    this.queued ??= this.serially(() => {
      this.queued = undefined;
      return this.write();
    });
    return this.queued;
  }

  /** Applies everything gathered so far, for the last time: the store is closed next. */
  close(): Promise<void> {
    const last = this.flush();
    this.closed = true;
    return last;
  }

  /**
   * Runs `read` once everything gathered so far is committed and its
   * afterCommit callbacks have run, and commits nothing else until it is
   * done: what it reads is the store exactly as the callbacks told it, and
   * whatever happens meanwhile is told after it (a watcher replays the past,
   * then hears the rest, missing nothing and hearing nothing twice). `read`
   * only reads: a flush it waited for would wait for it.
   */
  exclusive<T>(read: () => Promise<T>): Promise<T> {
    return this.serially(async () => {
      await this.write();
      return read();
    });
  }

  /**
   * Runs `op` after every write asked for before it has ended: batches are
   * applied one at a time and in order, so a later write of a row always
   * lands after an earlier one, and audit entries in their chain's order.
   */
  private serially<T>(op: () => Promise<T>): Promise<T> {
    const run = this.tail.then(op);
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Applies what is gathered when it runs (not when it was asked for: a write
   * that failed is put back and goes with the next one, newer rows winning),
   * then runs the callbacks waiting for it.
   */
  private async write(): Promise<void> {
    const callbacks = this.committed;
    this.committed = [];
    if (this.size > 0) {
      const batch: WriteBatch = {
        agents: [...this.agents.values()],
        actions: this.actions,
        commands: [...this.commands.values()],
        results: this.results,
        completed: this.completed,
        audit: this.audits,
        alerts: this.alerts,
        evidence: this.evidenceItems,
      };
      this.agents = new Map();
      this.actions = [];
      this.commands = new Map();
      this.results = [];
      this.completed = [];
      this.audits = [];
      this.alerts = [];
      this.evidenceItems = [];
      this.size = 0;
      try {
        await this.store.apply(batch);
      } catch (err) {
        this.putBack(batch, callbacks);
        this.failures++;
        this.log.error("store write failed; will retry", { error: err, results: batch.results.length });
        // Backing off: a timer set meanwhile for the usual interval gives way to the longer wait.
        clearTimeout(this.timer);
        this.timer = undefined;
        this.schedule(Math.min(5000, this.intervalMs * 2 ** this.failures));
        throw err;
      }
    }
    this.failures = 0;
    for (const fn of callbacks) {
      // One that fails (a watcher gone, a connection closing) holds none of the others back.
      try {
        fn();
      } catch (err) {
        this.log.warn("after-commit callback failed", { error: err });
      }
    }
  }

  /** Keeps a batch that failed for the next attempt, before what was gathered meanwhile (newer writes of a row still win). */
  private putBack(batch: WriteBatch, callbacks: Array<() => void>): void {
    for (const a of batch.agents) if (!this.agents.has(a.id)) this.agents.set(a.id, a);
    for (const c of batch.commands) if (!this.commands.has(c.id)) this.commands.set(c.id, c);
    this.actions = [...batch.actions, ...this.actions];
    this.results = [...batch.results, ...this.results];
    this.completed = [...batch.completed, ...this.completed];
    this.audits = [...batch.audit, ...this.audits];
    this.alerts = [...batch.alerts, ...this.alerts];
    this.evidenceItems = [...batch.evidence, ...this.evidenceItems];
    this.size += batch.agents.length + batch.actions.length + batch.commands.length;
    this.size += batch.results.length + batch.completed.length + batch.audit.length + batch.alerts.length;
    this.size += batch.evidence.length;
    this.committed = [...callbacks, ...this.committed];
  }
}
