import { Codes, DragnetError, parseTarget, type TargetContext } from "../common/mod.js";
import {
  type ActionDetail,
  type ActionSummary,
  type AgentInfo,
  type AgentResult,
  type AuditEntry,
  CommandResult,
  SignedAction,
} from "../proto/api.js";
import { type ActionListener, summarize } from "./action-book.js";
import type { AlertFilter } from "./alert-book.js";
import { countsOf, isFinal } from "./command-status.js";
import type { CoordinatorCore } from "./core.js";
import { resolvePrefix } from "./id-prefix.js";
import type { StoredAgent } from "./store/store.js";

// What consoles read: agents, actions with their results, the audit log, and
// the live stream of an action. Nothing here changes state but for flushing
// pending writes, so what is read is what was stored.

export class Queries {
  constructor(private readonly core: CoordinatorCore) {}

  /** A full action id from an id or unambiguous prefix. */
  resolveActionId(idOrPrefix: string): string {
    const { book, batcher, store } = this.core;
    if (book.get(idOrPrefix)) return idOrPrefix;
    batcher.flush();
    return resolvePrefix("action", idOrPrefix, (p, n) => store.actionIdsByPrefix(p, n));
  }

  /** What target expressions are evaluated with: the time, and which agents found something (matched()). */
  targetContext(now: number): TargetContext {
    return {
      now,
      matched: (actionId) => {
        this.core.batcher.flush();
        return new Set(this.core.store.matchedAgents(this.resolveActionId(actionId)));
      },
    };
  }

  agentInfo(agent: StoredAgent, now = this.core.now()): AgentInfo {
    return {
      id: agent.id,
      hostname: agent.hostname,
      os: agent.os,
      osRelease: agent.osRelease,
      arch: agent.arch,
      version: agent.version,
      addresses: agent.addresses,
      tags: agent.tags,
      isolated: agent.isolated,
      status: this.core.registry.status(agent, now),
      lastSeenMs: agent.lastSeenMs,
      startedAtMs: agent.startedAtMs,
      firstSeenMs: agent.firstSeenMs,
      upgradeState: agent.upgrade?.state ?? "",
      upgradeVersion: agent.upgrade?.version ?? "",
      upgradeDetail: agent.upgrade?.detail ?? "",
      problems: agent.problems ?? [],
      clockSkewMs: agent.clockSkewMs ?? 0,
      isolatedSinceMs: agent.isolated ? (agent.isolatedSinceMs ?? 0) : 0,
      isolationActionId: agent.isolated ? (agent.isolationActionId ?? "") : "",
    };
  }

  /** The agents a target selects (every agent for an empty one), by host name. */
  listAgents(target: string): AgentInfo[] {
    const now = this.core.now();
    const registry = this.core.registry;
    const agents = target.trim()
      ? registry.select(parseTarget(target), this.targetContext(now))
      : registry.all();
    return agents
      .sort((a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id))
      .map((a) => this.agentInfo(a, now));
  }

  actionSummary(id: string): ActionSummary {
    const { book, batcher, store } = this.core;
    const open = book.get(id);
    if (open) return book.summary(open);
    batcher.flush();
    const record = store.getAction(id);
    if (!record) throw new DragnetError(Codes.NOT_FOUND, `no action ${id}`);
    return summarize(record, countsOf(store.commandsOf(id)));
  }

  getAction(idOrPrefix: string, includeResults: boolean): ActionDetail {
    const id = this.resolveActionId(idOrPrefix);
    const summary = this.actionSummary(id);
    const record = this.core.store.getAction(id);
    return {
      summary,
      results: includeResults ? this.agentResults(id) : [],
      action: record ? SignedAction.decode(record.signed) : undefined,
    };
  }

  /** Every command of an action with its result where there is one. */
  agentResults(actionId: string): AgentResult[] {
    const { book, batcher, store } = this.core;
    batcher.flush();
    const payloads = new Map(store.resultsOf(actionId).map((r) => [r.commandId, r.payload]));
    const open = book.get(actionId);
    const commands = open ? [...open.byId.values()] : store.commandsOf(actionId);
    return commands.map((c) => {
      const payload = payloads.get(c.id);
      return book.agentResult(c, payload ? CommandResult.decode(payload) : undefined);
    });
  }

  listActions(limit: number, pendingOnly = false): ActionSummary[] {
    this.core.batcher.flush();
    return this.core.store.listActions(limit, pendingOnly).map((r) => this.actionSummary(r.id));
  }

  listAudit(limit: number, actionId: string): AuditEntry[] {
    this.core.batcher.flush();
    const id = actionId ? this.resolveActionId(actionId) : undefined;
    return this.core.store.listAudit(limit, id);
  }

  /**
   * Streams an action: its summary now, every final result so far, then each
   * change as it happens, and `done` when every command is final.
   */
  watch(idOrPrefix: string, send: ActionListener, end: () => void): () => void {
    const { book, batcher } = this.core;
    const id = this.resolveActionId(idOrPrefix);
    const open = book.get(id);
    if (!open) {
      send({ event: { $case: "progress", value: this.actionSummary(id) } });
      for (const r of this.agentResults(id))
        if (isFinal(r.status)) send({ event: { $case: "result", value: r } });
      send({ event: { $case: "done", value: this.actionSummary(id) } });
      end();
      return () => undefined;
    }
    // Commit (and deliver) everything pending first, then subscribe and replay
    // in the same tick: no event is missed and none is seen twice.
    batcher.flush();
    const unsubscribe = book.subscribe(id, (event) => {
      send(event);
      if (event.event?.$case === "done") end();
    });
    send({ event: { $case: "progress", value: book.summary(open) } });
    for (const r of this.agentResults(id))
      if (isFinal(r.status)) send({ event: { $case: "result", value: r } });
    return unsubscribe;
  }

  /** Which agents a target expression selects now, for filtering alerts; none given: every agent. */
  alertFilter(target: string): AlertFilter {
    if (!target.trim()) return {};
    const selected = this.core.registry.select(parseTarget(target), this.targetContext(this.core.now()));
    return { agents: new Set(selected.map((a) => a.id)) };
  }
}
