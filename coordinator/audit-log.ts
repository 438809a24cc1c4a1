import type { KeyObject } from "node:crypto";
import { type AuditHead, type AuditVerdict, chainAudit, verifyAuditChain } from "../common/audit-chain.js";
import type { Logger } from "../common/mod.js";
import { MinuteBudget } from "./minute-budget.js";
import type { Store } from "./store/store.js";
import type { WriteBatcher } from "./write-batcher.js";

// Who did what: every API call with the investigator who made it, approvals,
// commands agents refused, messages the coordinator refused. Entries go to the
// store with the next batch and to the log at once. Each entry is chained and
// sealed (common/audit-chain.ts) in this coordinator's chain: `verify` finds
// any row deleted, edited or cut off in the database.

/** Entries from each kind of untrusted source recorded per minute (the rest are only counted). */
const UNTRUSTED_PER_MINUTE = 100;
/** Longer reasons (they may come from a client) are cut. */
const MAX_MESSAGE = 1000;

export interface AuditFields {
  actionId?: string;
  agentId?: string;
  code?: string;
  message?: string;
}

/**
 * Untrusted sources, each with its own budget: a flood of junk on NATS must
 * not hide the refused API calls (and the other way round).
 */
export type UntrustedSource = "agents" | "api" | "enrolment";

export class AuditLog {
  private readonly budget = new MinuteBudget<UntrustedSource>(UNTRUSTED_PER_MINUTE);
  private head: Pick<AuditHead, "n" | "hash"> | undefined;

  constructor(
    private readonly batcher: WriteBatcher,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly now: () => number,
    /** This coordinator's chain (its id) and the key that seals it (the journal key). */
    private readonly chain: { id: string; key: KeyObject; publicKey: KeyObject },
  ) {}

  /** Takes up this coordinator's chain where the store has it; before anything is recorded. */
  async load(): Promise<void> {
    this.head = await this.store.auditHead(this.chain.id);
    await this.chainOld();
  }

  record(actor: string, event: string, fields: AuditFields = {}): void {
    const { entry, head } = chainAudit(
      {
        atMs: this.now(),
        actor: actor.slice(0, 200),
        event,
        actionId: (fields.actionId ?? "").slice(0, 26),
        agentId: (fields.agentId ?? "").slice(0, 64),
        code: (fields.code ?? "").slice(0, 64),
        message: (fields.message ?? "").slice(0, MAX_MESSAGE),
      },
      this.chain.id,
      this.head,
      this.chain.key,
    );
    this.head = head;
    this.batcher.audit({ entry, head });
    this.log.info(event, {
      audit: true,
      actor: entry.actor,
      action: entry.actionId || undefined,
      agent: entry.agentId || undefined,
      code: entry.code || undefined,
      reason: entry.message || undefined,
    });
  }

  /**
   * Records what an unauthenticated or untrusted source caused (a refused NATS
   * message, an API call without valid credentials), at most
   * UNTRUSTED_PER_MINUTE a minute for each kind of source: nobody must be
   * able to fill the database or bury real entries. What is left out is
   * counted, and recorded when the minute is over.
   */
  untrusted(source: UntrustedSource, actor: string, event: string, fields: AuditFields = {}): void {
    const fits = this.budget.take(source, this.now(), (count, since) =>
      this.record("coordinator", "entries not recorded", {
        message: `${count} more ${DESCRIBED[source]} in the minute from ${new Date(since).toISOString()} (see the coordinator's log)`,
      }),
    );
    if (fits) this.record(actor, event, fields);
  }

  /** Checks every chain in the store (a coordinator's own and those of others sharing it). */
  async verify(): Promise<AuditVerdict[]> {
    // Everything recorded so far is committed first; each chain is read as of one instant
    // (another coordinator may be appending to its own meanwhile).
    return this.batcher.exclusive(async () => {
      const verdicts: AuditVerdict[] = [];
      for (const c of await this.store.auditChains()) {
        const { head, entries } = await this.store.auditChain(c);
        verdicts.push(verifyAuditChain(c, entries, head, this.chain.publicKey));
      }
      return verdicts;
    });
  }

  /** Entries from before the audit log was chained (an older store) join this coordinator's chain, and it says so. */
  private async chainOld(): Promise<void> {
    const old = await this.store.unchainedAudit();
    if (old.length === 0) return;
    const chained = old.map(({ seq, ...fields }) => {
      const c = chainAudit(fields, this.chain.id, this.head, this.chain.key);
      this.head = c.head;
      return { seq, ...c };
    });
    await this.store.chainOldAudit(chained);
    this.record("coordinator", "audit entries sealed", {
      message: `${old.length} entries written before the audit log was chained were sealed on ${new Date(this.now()).toISOString()}: they are as the database held them then`,
    });
  }
}

const DESCRIBED: Record<UntrustedSource, string> = {
  agents: "messages refused from NATS",
  api: "unauthenticated API calls",
  enrolment: "refused enrolments",
};
