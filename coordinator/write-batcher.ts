import type { Logger } from "../common/mod.js";
import type {
  Store,
  StoredAction,
  StoredAgent,
  StoredCommand,
  StoredResult,
  WriteBatch,
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
  private committed: Array<() => void> = [];
  private timer?: NodeJS.Timeout;
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
  complete(actionId: string, atMs: number): void {
    this.completed.push({ actionId, atMs });
    this.added();
  }

  /** Runs `fn` once everything written so far is committed (watchers hear of a result only once it is stored). */
  afterCommit(fn: () => void): void {
    this.committed.push(fn);
    this.timer ??= setTimeout(() => this.flush(), this.intervalMs);
  }

  private added(): void {
    if (++this.size >= this.maxPending) {
      this.flush();
      return;
    }
    this.timer ??= setTimeout(() => this.flush(), this.intervalMs);
  }

  /** Applies everything gathered so far; reads that must see it call this first. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const callbacks = this.committed;
    this.committed = [];
    if (this.size > 0) this.write();
    for (const fn of callbacks) fn();
  }

  private write(): void {
    const batch: WriteBatch = {
      agents: [...this.agents.values()],
      actions: this.actions,
      commands: [...this.commands.values()],
      results: this.results,
      completed: this.completed,
    };
    this.agents = new Map();
    this.actions = [];
    this.commands = new Map();
    this.results = [];
    this.completed = [];
    this.size = 0;
    try {
      this.store.apply(batch);
    } catch (err) {
      this.log.error("store write failed", { error: err, results: batch.results.length });
      throw err;
    }
  }
}
