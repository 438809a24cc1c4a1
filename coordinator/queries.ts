import {
  Codes,
  DragnetError,
  matchedActionIds,
  parseTarget,
  type TargetContext,
  type TargetExpr,
} from "../common/mod.js";
import {
  type ActionDetail,
  type ActionEvent,
  ActionState,
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
import type { StoredAgent, StoredCommand } from "./store/store.js";

// What consoles read: agents, actions with their results, the audit log, and
// the live stream of an action. Nothing here changes state but for flushing
// pending writes, so what is read is what was stored.

export class Queries {
  constructor(private readonly core: CoordinatorCore) {}

  /** A full action id from an id or unambiguous prefix. */
  async resolveActionId(idOrPrefix: string): Promise<string> {
    const { book, batcher, store } = this.core;
    if (book.get(idOrPrefix)) return idOrPrefix;
    await batcher.flush();
    return resolvePrefix("action", idOrPrefix, (p, n) => store.actionIdsByPrefix(p, n));
  }

  /**
   * What `expr` is evaluated with: the time, and which agents found something
   * for each action it names in matched(...), read from the store beforehand
   * (evaluation is synchronous). An action that cannot be read fails the
   * evaluation only if it comes to matched() — as when it was read there.
   */
  async targetContext(expr: TargetExpr, now: number): Promise<TargetContext> {
    const ids = new Set(matchedActionIds(expr));
    if (ids.size === 0) return { now };
    await this.core.batcher.flush();
    const sets = new Map<string, ReadonlySet<string>>();
    const failures = new Map<string, unknown>();
    for (const id of ids) {
      try {
        sets.set(id, new Set(await this.core.store.matchedAgents(await this.resolveActionId(id))));
      } catch (err) {
        failures.set(id, err);
      }
    }
    return {
      now,
      matched: (actionId) => {
        if (failures.has(actionId)) throw failures.get(actionId);
        return sets.get(actionId);
      },
    };
  }

  /** The agents a target selects now. */
  async select(expr: TargetExpr, now: number): Promise<StoredAgent[]> {
    return this.core.registry.select(expr, await this.targetContext(expr, now));
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
  async listAgents(target: string): Promise<AgentInfo[]> {
    const now = this.core.now();
    const agents = target.trim() ? await this.select(parseTarget(target), now) : this.core.registry.all();
    return agents
      .sort((a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id))
      .map((a) => this.agentInfo(a, now));
  }

  async actionSummary(id: string): Promise<ActionSummary> {
    const open = this.core.book.get(id);
    if (open) return this.core.book.summary(open);
    await this.core.batcher.flush();
    return this.storedSummary(id);
  }

  /** An action as the store has it (or the book, while it is open); pending writes are the caller's to flush. */
  private async storedSummary(id: string): Promise<ActionSummary> {
    const { book, store } = this.core;
    const record = await store.getAction(id);
    const open = book.get(id);
    if (open) return book.summary(open);
    if (!record) throw new DragnetError(Codes.NOT_FOUND, `no action ${id}`);
    return summarize(record, countsOf(await store.commandsOf(id)));
  }

  async getAction(idOrPrefix: string, includeResults: boolean): Promise<ActionDetail> {
    const id = await this.resolveActionId(idOrPrefix);
    const summary = await this.actionSummary(id);
    const record = await this.core.store.getAction(id);
    return {
      summary,
      results: includeResults ? await this.agentResults(id) : [],
      action: record ? SignedAction.decode(record.signed) : undefined,
    };
  }

  /** Every command of an action with its result where there is one. */
  async agentResults(actionId: string): Promise<AgentResult[]> {
    await this.core.batcher.flush();
    const stored = await this.storedResults(actionId);
    const open = this.core.book.get(actionId);
    // An open action's commands as they are now (what was read of them may be behind).
    const commands = open ? [...open.byId.values()] : stored.commands;
    return commands.map((c) => this.core.book.agentResult(c, stored.result(c.id)));
  }

  /** An action's commands and results as the store has them. */
  private async storedResults(actionId: string): Promise<{
    commands: StoredCommand[];
    result(commandId: string): CommandResult | undefined;
  }> {
    const { store } = this.core;
    const payloads = new Map((await store.resultsOf(actionId)).map((r) => [r.commandId, r.payload]));
    const commands = await store.commandsOf(actionId);
    return {
      commands,
      result: (commandId) => {
        const payload = payloads.get(commandId);
        return payload ? CommandResult.decode(payload) : undefined;
      },
    };
  }

  async listActions(limit: number, pendingOnly = false): Promise<ActionSummary[]> {
    await this.core.batcher.flush();
    const out: ActionSummary[] = [];
    for (const r of await this.core.store.listActions(limit, pendingOnly))
      out.push(await this.storedSummary(r.id));
    return out;
  }

  async listAudit(limit: number, actionId: string): Promise<AuditEntry[]> {
    await this.core.batcher.flush();
    const id = actionId ? await this.resolveActionId(actionId) : undefined;
    return this.core.store.listAudit(limit, id);
  }

  /**
   * Streams an action: its summary now, every final result so far, then each
   * change as it happens, and `done` when every command is final.
   */
  async watch(idOrPrefix: string, send: ActionListener, end: () => void): Promise<() => void> {
    const { book, batcher } = this.core;
    const id = await this.resolveActionId(idOrPrefix);
    if (book.get(id)) {
      // Subscribed before the past is read (the book tells only those subscribed when a command
      // changes). Nothing else is committed while the past is read, and what the book tells
      // before it is read is in what is read: dropped, so that nothing is heard twice.
      let replaying = true;
      const unsubscribe = book.subscribe(id, (event) => {
        if (replaying) return;
        send(event);
        if (event.event?.$case === "done") end();
      });
      try {
        const live = await batcher.exclusive(async () => {
          const stored = await this.storedResults(id);
          const open = book.get(id);
          if (!open) return false; // it completed meanwhile: told below, as a completed one
          send({ event: { $case: "progress", value: book.summary(open) } });
          for (const c of stored.commands) {
            if (isFinal(c.status))
              send({ event: { $case: "result", value: book.agentResult(c, stored.result(c.id)) } });
          }
          replaying = false;
          return true;
        });
        if (live) {
          // Another coordinator may take it over (this one was silent for a lease): from then on,
          // what that one relays is followed, or, if it completed meanwhile, how it ended.
          let stop = unsubscribe;
          const unDropped = book.whenDropped(id, () => {
            unsubscribe();
            this.followElsewhere(id, send, end)
              .then(async (followed) => {
                if (followed) stop = followed;
                else await this.sendEnded(id, send, end);
              })
              .catch(() => end());
          });
          return () => {
            unDropped();
            stop();
          };
        }
      } catch (err) {
        unsubscribe();
        throw err;
      }
      unsubscribe();
    }
    const followed = await this.followElsewhere(id, send, end);
    if (followed) return followed;
    await this.sendEnded(id, send, end);
    return () => undefined;
  }

  /** A completed action (or one nobody dispatches): its summary, its results, done. */
  private async sendEnded(id: string, send: ActionListener, end: () => void): Promise<void> {
    send({ event: { $case: "progress", value: await this.actionSummary(id) } });
    for (const r of await this.agentResults(id))
      if (isFinal(r.status)) send({ event: { $case: "result", value: r } });
    send({ event: { $case: "done", value: await this.actionSummary(id) } });
    end();
  }

  /**
   * An open action another coordinator dispatches (several share the store): what it relays
   * (peer-relay.ts), after what the store has. Listening starts before the store is read; a
   * result heard in both is sent once. Undefined when the action is not open elsewhere.
   */
  private async followElsewhere(
    id: string,
    send: ActionListener,
    end: () => void,
  ): Promise<(() => void) | undefined> {
    const { peers, store, book } = this.core;
    if (!peers) return undefined;
    const record = await store.getAction(id);
    if (!record || record.completedAtMs !== undefined || record.state !== ActionState.ACTION_STATE_RELEASED)
      return undefined;
    const sent = new Set<string>();
    let replaying = true;
    const heard: ActionEvent[] = [];
    let ended = false;
    const forward = (event: ActionEvent) => {
      if (ended) return;
      if (event.event?.$case === "result") {
        const key = `${event.event.value.commandId}/${event.event.value.status}`;
        if (sent.has(key)) return;
        sent.add(key);
      }
      send(event);
      if (event.event?.$case === "done") {
        ended = true;
        stop();
        end();
      }
    };
    const stop = peers.follow(id, (event) => (replaying ? heard.push(event) : forward(event)));
    try {
      await peers.flush();
      // This coordinator may have taken the action over meanwhile: its book tells from here on.
      if (book.get(id)) {
        stop();
        return undefined;
      }
      forward({ event: { $case: "progress", value: await this.storedSummary(id) } });
      for (const r of await this.agentResults(id))
        if (isFinal(r.status)) forward({ event: { $case: "result", value: r } });
      const now = await store.getAction(id);
      if (now?.completedAtMs !== undefined)
        forward({ event: { $case: "done", value: await this.storedSummary(id) } });
    } catch (err) {
      stop();
      throw err;
    }
    replaying = false;
    for (const event of heard.splice(0)) forward(event);
    return () => {
      ended = true;
      stop();
    };
  }

  /** Which agents a target expression selects now, for filtering alerts; none given: every agent. */
  async alertFilter(target: string): Promise<AlertFilter> {
    if (!target.trim()) return {};
    const selected = await this.select(parseTarget(target), this.core.now());
    return { agents: new Set(selected.map((a) => a.id)) };
  }
}
