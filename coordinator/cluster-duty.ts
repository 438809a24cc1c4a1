import type { Logger } from "../common/mod.js";
import type { ActionBook } from "./action-book.js";
import type { AuditLog } from "./audit-log.js";
import type { CoordinatorCluster } from "./store/pg-cluster.js";

// What a coordinator does when several share one PostgreSQL store: it keeps
// its lease, lets go of an action another took over while it was silent, and
// takes over the open actions of a coordinator whose lease ran out (its
// commands, its results feed and acks). One of them, the leader (the first
// alive by id), does what must happen once (expiring unapproved actions,
// delivering to export sinks). Leases are timed by the database's clock, so a
// coordinator whose host clock is off neither loses its lease nor keeps a dead one's.

export interface ClusterDutyParts {
  cluster: CoordinatorCluster;
  book: ActionBook;
  audit: AuditLog;
  log: Logger;
  /** This coordinator's id, and how long its lease lasts unrenewed. */
  id: string;
  leaseMs: number;
  /** Loads the actions taken over (verified again). */
  takeOver(from: string[], actionIds: string[]): Promise<void>;
  /** Reads what agents still send the coordinators this one took over (resolves once it does). */
  readFor(silent: string[]): Promise<void>;
  /** Told when this coordinator becomes, or stops being, the leader. */
  leadership(leading: boolean): void;
}

export class ClusterDuty {
  private renewer?: NodeJS.Timeout;
  private watcher?: NodeJS.Timeout;
  private renewing?: Promise<void>;
  private watching?: Promise<void>;
  private leader = false;

  constructor(private readonly parts: ClusterDutyParts) {}

  /** Whether this coordinator does what must happen once across them all. */
  leading(): boolean {
    return this.leader;
  }

  async start(): Promise<void> {
    const { cluster, id, leaseMs } = this.parts;
    await cluster.join(id, await cluster.clock(), leaseMs);
    await this.renew();
    await this.watch();
    // The lease on a timer of its own, renewed four times a lease: taking over (which may wait on
    // JetStream for a while) never holds a renewal back, so this one is never thought silent for it.
    const every = Math.max(250, Math.floor(leaseMs / 4));
    this.renewer = setInterval(() => {
      this.renewing ??= this.renew()
        .catch((err: unknown) => this.parts.log.error("lease not renewed; tried again", { error: err }))
        .finally(() => {
          this.renewing = undefined;
        });
    }, every);
    this.watcher = setInterval(() => {
      this.watching ??= this.watch()
        .catch((err: unknown) =>
          this.parts.log.error("taking over silent coordinators failed; tried again", { error: err }),
        )
        .finally(() => {
          this.watching = undefined;
        });
    }, every);
  }

  private async renew(): Promise<void> {
    const { cluster, book, id, leaseMs, log } = this.parts;
    let alive: string[];
    try {
      const now = await cluster.clock();
      const lost = await cluster.renew(
        id,
        now,
        leaseMs,
        [...book.all()].map((a) => a.record.id),
      );
      for (const actionId of lost) {
        book.drop(actionId);
        log.warn("another coordinator took this action over while this one was silent; let go", {
          action: actionId,
        });
      }
      alive = await cluster.alive(now);
    } catch (err) {
      // Not sure of its own lease: it leads nothing meanwhile.
      this.lead(false);
      throw err;
    }
    this.lead(alive[0] === id);
  }

  private lead(leading: boolean): void {
    if (leading === this.leader) return;
    this.leader = leading;
    this.parts.log.info(leading ? "leading the coordinators" : "no longer leading the coordinators", {});
    this.parts.leadership(leading);
  }

  private async watch(): Promise<void> {
    const { cluster, id, log, audit } = this.parts;
    const { from, actions } = await cluster.adoptExpired(id, await cluster.clock());
    if (from.length > 0) {
      log.warn("coordinators fell silent: their open actions are taken over", {
        from,
        actions: actions.length,
      });
      audit.record("coordinator", "took over open actions", {
        message: `${actions.length} open action(s) of ${from.join(", ")}, whose lease ran out`,
      });
      await this.parts.takeOver(from, actions);
    }
    // Every tick, not only when taking over: after a restart, or when a failure cut a take-over
    // short, what agents still send the silent ones is read here again.
    await this.parts.readFor(await cluster.adoptedBy(id));
  }

  /** Stops renewing and taking over; the lease stays until leave(). */
  async stop(): Promise<void> {
    clearInterval(this.renewer);
    clearInterval(this.watcher);
    await Promise.allSettled([this.renewing, this.watching]);
    this.lead(false);
  }

  /** Gives the lease up (at a clean stop, once everything is written): the others take over at once. */
  async leave(): Promise<void> {
    await this.parts.cluster.leave(this.parts.id).catch(() => undefined);
  }
}
