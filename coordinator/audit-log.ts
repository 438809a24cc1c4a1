import type { Logger } from "../common/mod.js";
import type { WriteBatcher } from "./write-batcher.js";

// Who did what: every API call with the investigator who made it, approvals,
// commands agents refused, messages the coordinator refused. Entries go to the
// store with the next batch and to the log at once.

/** Refused NATS messages recorded per minute (the rest are only counted). */
const REFUSALS_PER_MINUTE = 100;

export interface AuditFields {
  actionId?: string;
  agentId?: string;
  code?: string;
  message?: string;
}

export class AuditLog {
  private readonly refusals = { since: 0, count: 0, suppressed: 0 };

  constructor(
    private readonly batcher: WriteBatcher,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  record(actor: string, event: string, fields: AuditFields = {}): void {
    const entry = {
      atMs: this.now(),
      actor,
      event,
      actionId: fields.actionId ?? "",
      agentId: fields.agentId ?? "",
      code: fields.code ?? "",
      message: fields.message ?? "",
    };
    this.batcher.audit(entry);
    this.log.info(event, {
      audit: true,
      actor,
      action: entry.actionId || undefined,
      agent: entry.agentId || undefined,
      code: entry.code || undefined,
      reason: entry.message || undefined,
    });
  }

  /**
   * Records a refused NATS message, at most REFUSALS_PER_MINUTE a minute: a
   * misbehaving client must not fill the database. What is left out is counted
   * and recorded when the minute is over.
   */
  refusedMessage(
    kind: string,
    agentId: string | undefined,
    problem: { code: string; message: string },
  ): void {
    const now = this.now();
    const w = this.refusals;
    if (now - w.since >= 60_000) {
      if (w.suppressed) {
        this.record("coordinator", "refused messages not recorded", {
          message: `${w.suppressed} more refused messages in the minute from ${new Date(w.since).toISOString()} (see the coordinator's log)`,
        });
      }
      w.since = now;
      w.count = 0;
      w.suppressed = 0;
    }
    if (++w.count > REFUSALS_PER_MINUTE) {
      w.suppressed++;
      return;
    }
    this.record(agentId ? `agent ${agentId}` : "unknown publisher", `${kind} refused`, {
      agentId: agentId ?? "",
      code: problem.code,
      message: problem.message,
    });
  }
}
