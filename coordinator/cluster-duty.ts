import type { Logger } from "../common/mod.js";
import type { ActionBook } from "./action-book.js";
import type { AuditLog } from "./audit-log.js";
import type { CoordinatorCluster } from "./store/pg-cluster.js";

// What a coordinator does when several share one PostgreSQL store: it keeps
// its lease, lets go of an action another took over while it was silent, and
// takes over the open actions of a coordinator whose lease ran out (its
// commands, its results feed and acks). One of them, the leader (the first
// alive by id), does what must happen once (expiring unapproved actions).

export interface ClusterDutyParts {
  cluster: CoordinatorCluster;
  book: ActionBook;
  audit: AuditLog;
  log: Logger;
  now: () => number;
  /** This coordinator's id, and how long its lease lasts unrenewed. */
  id: string;
  leaseMs: number;
  /** Loads the actions taken over and reads what agents still send to the silent coordinators. */
  takeOver(from: string[], actionIds: string[]): Promise<void>;
}

export class ClusterDuty {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private leader = false;

  constructor(private readonly parts: ClusterDutyParts) {}

  /** Whether this coordinator does what must happen once across them all. */
  leading(): boolean {
    return this.leader;
  }

  async start(): Promise<void> {
    const { cluster, id, leaseMs, now } = this.parts;
    await cluster.join(id, now(), leaseMs);
    await this.tick();
    // Renewed four times a lease: a coordinator is thought dead only after several missed renewals.
    this.timer = setInterval(
      () => {
        if (this.running) return;
        this.running = this.tick()
          .catch((err: unknown) => this.parts.log.error("cluster duty failed; tried again", { error: err }))
          .finally(() => {
            this.running = undefined;
          });
      },
      Math.max(250, Math.floor(leaseMs / 4)),
    );
  }

  private async tick(): Promise<void> {
    const { cluster, book, id, leaseMs, now, log, audit } = this.parts;
    const lost = await cluster.renew(
      id,
      now(),
      leaseMs,
      [...book.all()].map((a) => a.record.id),
    );
    for (const actionId of lost) {
      book.drop(actionId);
      log.warn("another coordinator took this action over while this one was silent; let go", {
        action: actionId,
      });
    }
    const alive = await cluster.alive(now());
    this.leader = alive[0] === id;
    const { from, actions } = await cluster.adoptExpired(id, now());
    if (from.length === 0) return;
    log.warn("coordinators fell silent: their open actions are taken over", {
      from,
      actions: actions.length,
    });
    audit.record("coordinator", "took over open actions", {
      message: `${actions.length} open action(s) of ${from.join(", ")}, whose lease ran out`,
    });
    await this.parts.takeOver(from, actions);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    // Given up at once: the others take this one's open actions over without waiting for the lease.
    await this.parts.cluster.leave(this.parts.id).catch(() => undefined);
  }
}
