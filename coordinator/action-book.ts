import type { Logger } from "../common/mod.js";
import type {
  ActionBody,
  ActionEvent,
  ActionSummary,
  AgentResult,
  CommandResult,
  SignedAction,
} from "../proto/api.js";
import { CommandStatus } from "../proto/api.js";
import { canTransition, emptyCounts, isFinal, tally } from "./command-status.js";
import type { AgentRegistry } from "./registry.js";
import type { StoredAction, StoredCommand } from "./store/store.js";
import type { WriteBatcher } from "./write-batcher.js";

// The actions still in flight, in memory: each command's state, incremental
// counts, and the consoles watching. Every state change goes through
// transition(), which persists it (batched), tells watchers and notices when
// an action is complete.

export class OpenAction {
  readonly byId = new Map<string, StoredCommand>();
  readonly byAgent = new Map<string, StoredCommand>();
  readonly counts = emptyCounts();
  /** Commands whose result has been received (results are stored once). */
  readonly answered = new Set<string>();
  openCommands = 0;

  constructor(
    readonly record: StoredAction,
    /** What goes to the agents: the signed action, or for a schedule's run the signed schedule. */
    readonly signed: SignedAction,
    /** The action (a run's, derived from its schedule). */
    readonly body: ActionBody,
    commands: Iterable<StoredCommand>,
  ) {
    for (const c of commands) {
      this.byId.set(c.id, c);
      this.byAgent.set(c.agentId, c);
      this.counts.targeted++;
      tally(this.counts, c.status, 1);
      if (c.found) this.counts.found++;
      if (!isFinal(c.status)) this.openCommands++;
    }
  }
}

export type ActionListener = (event: ActionEvent) => void;

export interface TransitionPatch {
  problem?: { code: string; message: string };
  found?: boolean;
  sentAtMs?: number;
  ackedAtMs?: number;
  /** The agent's result, when this transition is its arrival. */
  result?: CommandResult;
}

const PROGRESS_INTERVAL_MS = 100;

export class ActionBook {
  private readonly open = new Map<string, OpenAction>();
  private readonly byCommand = new Map<string, OpenAction>();
  private readonly listeners = new Map<string, Set<ActionListener>>();
  /** Told when an action leaves this book before it completes (watchers follow it elsewhere). */
  private readonly dropWatchers = new Map<string, Set<() => void>>();
  private readonly progressTimers = new Map<string, NodeJS.Timeout>();
  /** Commands acknowledged as waiting in their agent's line and not started yet. */
  private readonly waiting = new Set<string>();
  /** Told of each action once every command is final (the notebook's results summary). */
  onComplete: (action: OpenAction) => void = () => undefined;
  /**
   * With several coordinators: told of every event of every open action once committed, for
   * consoles that follow an action through another coordinator (it relays them over NATS).
   */
  relay?: (actionId: string, event: ActionEvent) => void;

  constructor(
    private readonly batcher: WriteBatcher,
    private readonly registry: AgentRegistry,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  add(action: OpenAction): void {
    this.open.set(action.record.id, action);
    for (const id of action.byId.keys()) this.byCommand.set(id, action);
    if (action.openCommands === 0) this.complete(action);
  }

  /**
   * Lets an action go without completing it: another coordinator dispatches it now (it took it
   * over while this one was silent). Its watchers here are left to follow it from the store.
   */
  drop(actionId: string): OpenAction | undefined {
    const action = this.open.get(actionId);
    if (!action) return undefined;
    this.open.delete(actionId);
    const told = this.dropWatchers.get(actionId);
    this.dropWatchers.delete(actionId);
    for (const fn of told ?? []) fn();
    for (const cid of action.byId.keys()) {
      this.byCommand.delete(cid);
      this.waiting.delete(cid);
    }
    clearTimeout(this.progressTimers.get(actionId));
    this.progressTimers.delete(actionId);
    return action;
  }

  get(actionId: string): OpenAction | undefined {
    return this.open.get(actionId);
  }

  all(): IterableIterator<OpenAction> {
    return this.open.values();
  }

  actionOfCommand(commandId: string): OpenAction | undefined {
    return this.byCommand.get(commandId);
  }

  /** Open commands addressed to one agent, oldest action first. */
  openCommandsFor(agentId: string): Array<{ action: OpenAction; command: StoredCommand }> {
    const out: Array<{ action: OpenAction; command: StoredCommand }> = [];
    for (const action of this.open.values()) {
      const command = action.byAgent.get(agentId);
      if (command && !isFinal(command.status)) out.push({ action, command });
    }
    return out;
  }

  /** A command waiting in its agent's line (known in memory only: after a restart its deadline runs). */
  queued(command: StoredCommand): void {
    this.waiting.add(command.id);
  }

  isQueued(command: StoredCommand): boolean {
    return this.waiting.has(command.id);
  }

  /** A command that waited in its agent's line has started: its deadline counts from `atMs`. */
  started(command: StoredCommand, atMs: number): void {
    this.waiting.delete(command.id);
    command.ackedAtMs = atMs;
    command.updatedAtMs = atMs;
    this.batcher.command(command);
  }

  /** Applies a state change if it is allowed from the current state; says whether it was. */
  transition(
    action: OpenAction,
    command: StoredCommand,
    status: CommandStatus,
    patch: TransitionPatch = {},
  ): boolean {
    if (!canTransition(command.status, status)) return false;
    const wasOpen = !isFinal(command.status);
    tally(action.counts, command.status, -1);
    tally(action.counts, status, 1);
    if (patch.found && !command.found) action.counts.found++;
    command.status = status;
    command.updatedAtMs = this.now();
    if (patch.problem) {
      command.problemCode = patch.problem.code;
      command.problemMessage = patch.problem.message;
    }
    if (patch.found !== undefined) command.found = command.found || patch.found;
    if (patch.sentAtMs !== undefined) command.sentAtMs = patch.sentAtMs;
    if (patch.ackedAtMs !== undefined) command.ackedAtMs = patch.ackedAtMs;
    // "Sent" stays in memory: the row says pending until the agent answers. A restart sends such a
    // command again, and the agent, which never runs an action twice, says it has it (REPLAY) —
    // cheaper than one more row write per command of every sweep.
    if (status !== CommandStatus.COMMAND_STATUS_SENT) this.batcher.command(command);
    if (isFinal(status)) {
      this.waiting.delete(command.id);
      if (wasOpen) action.openCommands--;
      this.emit(action.record.id, {
        event: { $case: "result", value: this.agentResult(command, patch.result) },
      });
    }
    this.scheduleProgress(action);
    if (action.openCommands === 0) this.complete(action);
    return true;
  }

  agentResult(command: StoredCommand, result?: CommandResult): AgentResult {
    return {
      commandId: command.id,
      agentId: command.agentId,
      hostname: this.registry.get(command.agentId)?.hostname ?? "",
      status: command.status,
      problem: command.problemCode
        ? { code: command.problemCode, message: command.problemMessage }
        : undefined,
      result,
      updatedAtMs: command.updatedAtMs,
    };
  }

  summary(action: OpenAction): ActionSummary {
    const now = this.now();
    let waitingOffline = 0;
    if (action.openCommands > 0) {
      for (const c of action.byId.values()) {
        if (!isFinal(c.status) && this.registry.isOffline(c.agentId, now)) waitingOffline++;
      }
    }
    return summarize(action.record, { ...action.counts, waitingOffline }, action.openCommands === 0);
  }

  /** Calls `fn` if the action is dropped from this book (another coordinator took it over). */
  whenDropped(actionId: string, fn: () => void): () => void {
    let set = this.dropWatchers.get(actionId);
    if (!set) {
      set = new Set();
      this.dropWatchers.set(actionId, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.dropWatchers.get(actionId) === set) this.dropWatchers.delete(actionId);
    };
  }

  subscribe(actionId: string, listener: ActionListener): () => void {
    let set = this.listeners.get(actionId);
    if (!set) {
      set = new Set();
      this.listeners.set(actionId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(actionId);
    };
  }

  /** Tells watchers, once what the event reports is committed to the store. */
  private emit(actionId: string, event: ActionEvent): void {
    const relay = this.relay;
    if (relay) this.batcher.afterCommit(() => relay(actionId, event));
    if (!this.listeners.has(actionId)) return;
    this.batcher.afterCommit(() => this.deliver(actionId, event));
  }

  private deliver(actionId: string, event: ActionEvent): void {
    const set = this.listeners.get(actionId);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(event);
      } catch (err) {
        this.log.warn("watcher failed", { action: actionId, error: err });
      }
    }
  }

  private scheduleProgress(action: OpenAction): void {
    const id = action.record.id;
    if (this.progressTimers.has(id) || (!this.listeners.has(id) && !this.relay)) return;
    this.progressTimers.set(
      id,
      setTimeout(() => {
        this.progressTimers.delete(id);
        if (this.open.has(id)) this.emit(id, { event: { $case: "progress", value: this.summary(action) } });
      }, PROGRESS_INTERVAL_MS),
    );
  }

  private complete(action: OpenAction): void {
    const id = action.record.id;
    const at = this.now();
    action.record.completedAtMs = at;
    this.batcher.complete(id, at);
    this.open.delete(id);
    for (const cid of action.byId.keys()) this.byCommand.delete(cid);
    clearTimeout(this.progressTimers.get(id));
    this.progressTimers.delete(id);
    this.emit(id, { event: { $case: "done", value: this.summary(action) } });
    this.batcher.afterCommit(() => this.listeners.delete(id));
    this.log.info("action complete", { action: id, ...action.counts });
    this.onComplete(action);
  }

  stop(): void {
    for (const t of this.progressTimers.values()) clearTimeout(t);
    this.progressTimers.clear();
  }
}

export function summarize(
  record: StoredAction,
  counts: ActionSummary["counts"] = emptyCounts(),
  complete = record.completedAtMs !== undefined,
): ActionSummary {
  return {
    id: record.id,
    name: record.name,
    target: record.target,
    modules: record.modules,
    signerKeyIds: record.signerKeyIds,
    signerNames: record.signerNames,
    createdAtMs: record.createdAtMs,
    validFromMs: record.validFromMs,
    expiresAtMs: record.expiresAtMs,
    counts,
    complete,
    incidentId: record.incidentId,
    submittedAtMs: record.submittedAtMs,
    state: record.state,
    weight: record.weight,
    requiredWeight: record.requiredWeight,
    completedAtMs: record.completedAtMs ?? 0,
  };
}
