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
    this.timer ??= setTimeout(() => this.flushSafely(), this.intervalMs);
  }

  private added(): void {
    // Never flush synchronously here: everything one message handler writes
    // (a result and its command's new state) must land in the same transaction.
    if (++this.size >= this.maxPending && !this.immediate) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.immediate = setImmediate(() => this.flushSafely());
      return;
    }
    this.timer ??= setTimeout(() => this.flushSafely(), this.intervalMs);
  }

  /** Timer-driven flush: a failing store is logged and retried, never thrown into the event loop. */
  private flushSafely(): void {
    try {
      this.flush();
    } catch {
      this.failures++;
      this.timer ??= setTimeout(
        () => this.flushSafely(),
        Math.min(5000, this.intervalMs * 2 ** this.failures),
      );
    }
  }

  /**
   * Commits `part` now, after everything gathered before it, in a transaction
   * of its own; throws if it could not be stored and then keeps none of it. For
   * writes whose failure the caller must report (a submitted action is either
   * stored or refused, never committed later by a retry).
   */
  commitNow(part: Partial<WriteBatch>): void {
    this.flush();
    this.store.apply({ ...emptyWriteBatch(), ...part });
  }

  /** Applies everything gathered so far; reads that must see it call this first. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
    if (this.size > 0) this.write();
    this.failures = 0;
    const callbacks = this.committed;
    this.committed = [];
    for (const fn of callbacks) fn();
  }

  private write(): void {
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
      this.store.apply(batch);
    } catch (err) {
      // Keep everything for the next attempt (newer writes of a row still win), and say so.
      this.log.error("store write failed; will retry", { error: err, results: batch.results.length });
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
      throw err;
    }
  }
}
