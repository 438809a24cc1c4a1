import type { TargetContext, TargetExpr, TargetSubject } from "../common/mod.js";
import { Codes, DragnetError, evaluateTarget } from "../common/mod.js";
import { AgentStatus, type Heartbeat } from "../proto/api.js";
import type { StoredAgent } from "./store/store.js";

// The agent registry lives in memory, rebuilt from the store at start and kept
// current by heartbeats. Status is derived from heartbeat age when asked.

export interface RegistryOptions {
  onlineWithinMs?: number;
  offlineAfterMs: number;
}

export interface HeartbeatEffect {
  agent: StoredAgent;
  /** The agent was unknown, offline, or restarted: it may have missed commands. */
  cameBack: boolean;
  isNew: boolean;
  /** Worth writing to the store: something changed, or the stored last-seen time is getting old. */
  persist: boolean;
}

/** A heartbeat that changes nothing but the time is written at most this often per agent. */
const PERSIST_SEEN_EVERY_MS = 60_000;

function sameFacts(a: StoredAgent, b: StoredAgent): boolean {
  return (
    a.hostname === b.hostname &&
    a.os === b.os &&
    a.osRelease === b.osRelease &&
    a.arch === b.arch &&
    a.version === b.version &&
    a.isolated === b.isolated &&
    a.upgrade?.state === b.upgrade?.state &&
    a.startedAtMs === b.startedAtMs &&
    a.intervalMs === b.intervalMs &&
    a.addresses.join(" ") === b.addresses.join(" ") &&
    JSON.stringify(a.tags) === JSON.stringify(b.tags)
  );
}

const LIMITS = {
  text: 256,
  addresses: 64,
  problems: 8,
  tags: 64,
  tagKey: 64,
  tagValue: 256,
  minIntervalMs: 100,
  maxIntervalMs: 86_400_000,
};

/**
 * Refuses a heartbeat whose fields are out of bounds: whatever an agent (or a
 * thief of its credentials) sends ends up in every listing and every target
 * evaluation, so it must stay small, and its interval decides when it counts
 * as offline.
 */
export function checkHeartbeat(hb: Heartbeat): void {
  const refuse = (why: string) => new DragnetError(Codes.PARAMS, `heartbeat refused: ${why}`);
  for (const [name, value] of [
    ["hostname", hb.hostname],
    ["os", hb.os],
    ["osRelease", hb.osRelease],
    ["arch", hb.arch],
    ["version", hb.version],
    ["upgradeState", hb.upgradeState],
    ["upgradeVersion", hb.upgradeVersion],
    ["upgradeDetail", hb.upgradeDetail],
  ] as const) {
    if (value.length > LIMITS.text) throw refuse(`${name} is longer than ${LIMITS.text} characters`);
  }
  if (hb.problems.length > LIMITS.problems) throw refuse(`more than ${LIMITS.problems} problems`);
  if (hb.problems.some((p) => p.length > LIMITS.text))
    throw refuse(`a problem is longer than ${LIMITS.text} characters`);
  if (hb.addresses.length > LIMITS.addresses) throw refuse(`more than ${LIMITS.addresses} addresses`);
  if (hb.addresses.some((a) => a.length > 64)) throw refuse("an address is longer than 64 characters");
  const tags = Object.entries(hb.tags);
  if (tags.length > LIMITS.tags) throw refuse(`more than ${LIMITS.tags} tags`);
  for (const [k, v] of tags) {
    if (k.length > LIMITS.tagKey || v.length > LIMITS.tagValue)
      throw refuse(`tag ${k.slice(0, 64)} is too long`);
  }
  if (hb.isolationActionId.length > 64 || /[^\w-]/.test(hb.isolationActionId))
    throw refuse("isolationActionId is not an action id");
  if (hb.intervalMs && (hb.intervalMs < LIMITS.minIntervalMs || hb.intervalMs > LIMITS.maxIntervalMs)) {
    throw refuse(`an interval of ${hb.intervalMs} ms is outside ${LIMITS.minIntervalMs} ms to 1 day`);
  }
}

export class AgentRegistry {
  private readonly agents = new Map<string, StoredAgent>();
  private readonly persistedAt = new Map<string, number>();

  constructor(
    private readonly options: RegistryOptions,
    initial: Iterable<StoredAgent> = [],
  ) {
    for (const a of initial) this.agents.set(a.id, a);
  }

  /** The agents the store kept, at start (before any heartbeat). */
  restore(agents: Iterable<StoredAgent>): void {
    for (const a of agents) this.agents.set(a.id, a);
  }

  get size(): number {
    return this.agents.size;
  }

  get(id: string): StoredAgent | undefined {
    return this.agents.get(id);
  }

  /** An agent no longer of the fleet (revoked): no target selects it. */
  forget(id: string): void {
    this.agents.delete(id);
    this.persistedAt.delete(id);
  }

  all(): StoredAgent[] {
    return [...this.agents.values()];
  }

  status(agent: StoredAgent, now: number): AgentStatus {
    const age = now - agent.lastSeenMs;
    const onlineWithin = this.options.onlineWithinMs ?? 3 * Math.max(agent.intervalMs, 1000);
    if (age <= onlineWithin) return AgentStatus.AGENT_STATUS_ONLINE;
    if (age <= Math.max(this.options.offlineAfterMs, onlineWithin)) return AgentStatus.AGENT_STATUS_IDLE;
    return AgentStatus.AGENT_STATUS_OFFLINE;
  }

  isOffline(id: string, now: number): boolean {
    const agent = this.agents.get(id);
    return !agent || this.status(agent, now) === AgentStatus.AGENT_STATUS_OFFLINE;
  }

  observe(hb: Heartbeat, now: number): HeartbeatEffect {
    const previous = this.agents.get(hb.agentId);
    const agent: StoredAgent = {
      id: hb.agentId,
      hostname: hb.hostname,
      os: hb.os,
      osRelease: hb.osRelease,
      arch: hb.arch,
      version: hb.version,
      addresses: hb.addresses,
      tags: hb.tags,
      isolated: hb.isolated,
      // On the coordinator's clock (the agent's minus its skew), and never in the future.
      ...(hb.isolated
        ? {
            isolatedSinceMs: hb.isolatedSinceMs
              ? Math.max(
                  1,
                  Math.min(now, Number(hb.isolatedSinceMs) - (hb.sentAtMs ? Number(hb.sentAtMs) - now : 0)),
                )
              : 0,
            isolationActionId: hb.isolationActionId,
          }
        : {}),
      startedAtMs: hb.startedAtMs,
      // The coordinator's clock, not the agent's: staleness must not depend on agent clocks.
      lastSeenMs: now,
      firstSeenMs: previous?.firstSeenMs ?? now,
      intervalMs: hb.intervalMs || 10_000,
      ...(hb.upgradeState
        ? { upgrade: { state: hb.upgradeState, version: hb.upgradeVersion, detail: hb.upgradeDetail } }
        : {}),
      ...(hb.problems.length ? { problems: hb.problems } : {}),
      // Heartbeats travel in well under a second: what is left is the clocks' difference.
      ...(hb.sentAtMs ? { clockSkewMs: Number(hb.sentAtMs) - now } : {}),
    };
    const cameBack =
      !previous ||
      previous.startedAtMs !== hb.startedAtMs ||
      this.status(previous, now) === AgentStatus.AGENT_STATUS_OFFLINE;
    this.agents.set(agent.id, agent);
    // 10,000 agents beat 1,000 times a second: the store hears of a beat that changes nothing once a minute.
    const persist =
      cameBack ||
      !sameFacts(previous, agent) ||
      now - (this.persistedAt.get(agent.id) ?? 0) >= PERSIST_SEEN_EVERY_MS;
    if (persist) this.persistedAt.set(agent.id, now);
    return { agent, cameBack, isNew: !previous, persist };
  }

  subject(agent: StoredAgent, now: number): TargetSubject {
    return {
      id: agent.id,
      hostname: agent.hostname,
      os: agent.os,
      arch: agent.arch,
      version: agent.version,
      addresses: agent.addresses,
      tags: agent.tags,
      isolated: agent.isolated,
      lastSeenMs: agent.lastSeenMs,
      status: AgentStatus[this.status(agent, now)].replace("AGENT_STATUS_", "").toLowerCase(),
    };
  }

  select(expr: TargetExpr, ctx: TargetContext): StoredAgent[] {
    return this.all().filter((a) => evaluateTarget(expr, this.subject(a, ctx.now), ctx));
  }
}
