import type { Logger } from "../common/mod.js";
import type { WriteBatcher } from "./write-batcher.js";

// Who did what: every API call with the investigator who made it, approvals,
// commands agents refused, messages the coordinator refused. Entries go to the
// store with the next batch and to the log at once.

/** Entries from unauthenticated or untrusted sources recorded per minute (the rest are only counted). */
const UNTRUSTED_PER_MINUTE = 100;
/** Longer reasons (they may come from a client) are cut. */
const MAX_MESSAGE = 1000;

export interface AuditFields {
  actionId?: string;
  agentId?: string;
  code?: string;
  message?: string;
}

export class AuditLog {
  private readonly window = { since: 0, count: 0, suppressed: 0 };

  constructor(
    private readonly batcher: WriteBatcher,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  record(actor: string, event: string, fields: AuditFields = {}): void {
    const entry = {
      atMs: this.now(),
      actor: actor.slice(0, 200),
      event,
      actionId: (fields.actionId ?? "").slice(0, 26),
      agentId: (fields.agentId ?? "").slice(0, 64),
      code: (fields.code ?? "").slice(0, 64),
      message: (fields.message ?? "").slice(0, MAX_MESSAGE),
    };
    this.batcher.audit(entry);
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
   * UNTRUSTED_PER_MINUTE a minute: nobody must be able to fill the database or
   * bury real entries. What is left out is counted, and recorded when the
   * minute is over.
   */
  untrusted(actor: string, event: string, fields: AuditFields = {}): void {
    const now = this.now();
    const w = this.window;
    if (now - w.since >= 60_000) {
      if (w.suppressed) {
        this.record("coordinator", "entries not recorded", {
          message: `${w.suppressed} more refused messages or unauthenticated calls in the minute from ${new Date(w.since).toISOString()} (see the coordinator's log)`,
        });
      }
      w.since = now;
      w.count = 0;
      w.suppressed = 0;
    }
    if (++w.count > UNTRUSTED_PER_MINUTE) {
      w.suppressed++;
      return;
    }
    this.record(actor, event, fields);
  }
}
