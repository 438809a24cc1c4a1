import type pg from "pg";
import { ActionState } from "../../proto/api.js";
import { writeAction } from "./pg-batch.js";
import { inTransaction } from "./pg-connect.js";
import type { StoredAction } from "./store.js";

// Several coordinators on one PostgreSQL store: who is alive, and who
// dispatches each open action. Each coordinator holds a lease it renews every
// few seconds. An open action is owned by the coordinator that released it;
// when a coordinator's lease runs out (it died, or lost its database), one
// live coordinator claims it (FOR UPDATE SKIP LOCKED: one claimer, the others
// skip it) and takes its open actions as its own, in the same transaction.

/** What the coordinator asks of a shared store about its peers. */
export interface CoordinatorCluster {
  /**
   * Takes up (or takes back, after a restart) this coordinator's lease. One taken over keeps
   * its adopter: what agents still send it is read there too, until the adopter's actions end.
   */
  join(id: string, nowMs: number, ttlMs: number): Promise<void>;
  /**
   * Renews the lease. Returns those of `openIds` that another coordinator owns now (it
   * adopted them while this one was silent): this one must let them go, not dispatch them.
   */
  renew(id: string, nowMs: number, ttlMs: number, openIds: readonly string[]): Promise<string[]>;
  /**
   * Claims every other coordinator whose lease ran out and makes its open actions this
   * one's; each is claimed by one coordinator only. Returns whom it adopted, and the actions.
   */
  adoptExpired(id: string, nowMs: number): Promise<{ from: string[]; actions: string[] }>;
  /**
   * Open actions this coordinator dispatches. Released ones nobody owns (written before owners
   * were kept) become this one's: each is claimed by one coordinator, however many start at once.
   */
  owned(id: string): Promise<string[]>;
  /**
   * Replaces an action waiting for approval with `next` (a co-signature added; released, with
   * `owner` dispatching it; or expired) only if it still waits with exactly the signatures
   * `expected` holds: of two approvals, or an approval and the leader's expiry, racing through
   * different coordinators, one wins and the other reads again (false).
   */
  swapPending(expected: Uint8Array, next: StoredAction, owner: string): Promise<boolean>;
  /** The database's clock (ms since the epoch): leases are timed by one clock, not each host's. */
  clock(): Promise<number>;
  /** The coordinator that dispatches an action ("" for none). */
  ownerOf(actionId: string): Promise<string>;
  /** Silent coordinators this one took over (it reads what agents still send them). */
  adoptedBy(id: string): Promise<string[]>;
  /** Coordinators whose lease runs at `nowMs`. */
  alive(nowMs: number): Promise<string[]>;
  /** Gives the lease up at a clean stop: its open actions are adopted at once. */
  leave(id: string): Promise<void>;
}

export class PgCluster implements CoordinatorCluster {
  constructor(private readonly pool: pg.Pool) {}

  async join(id: string, nowMs: number, ttlMs: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO coordinators (id, lease_until, started_at) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, started_at = excluded.started_at`,
      [id, nowMs + ttlMs, nowMs],
    );
  }

  async renew(id: string, nowMs: number, ttlMs: number, openIds: readonly string[]): Promise<string[]> {
    await this.pool.query(
      `INSERT INTO coordinators (id, lease_until, started_at) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until,
         -- Back after being taken over (it was only slow): taken over again should it fall silent again.
         started_at = CASE WHEN coordinators.adopted_at IS NOT NULL AND coordinators.started_at <= coordinators.adopted_at
                           THEN excluded.started_at ELSE coordinators.started_at END`,
      [id, nowMs + ttlMs, nowMs],
    );
    if (openIds.length === 0) return [];
    const { rows } = await this.pool.query<{ id: string }>(
      "SELECT id FROM actions WHERE id = ANY($1::text[]) AND owner <> $2 AND owner <> ''",
      [openIds, id],
    );
    return rows.map((r) => r.id);
  }

  async adoptExpired(id: string, nowMs: number): Promise<{ from: string[]; actions: string[] }> {
    return inTransaction(this.pool, async (c) => {
      const dead = (
        await c.query<{ id: string }>(
          // Not yet taken over, or back since it was (and silent again).
          `SELECT id FROM coordinators
           WHERE lease_until < $1 AND id <> $2 AND (adopted_by = '' OR started_at > adopted_at)
           FOR UPDATE SKIP LOCKED`,
          [nowMs, id],
        )
      ).rows.map((r) => r.id);
      if (dead.length === 0) return { from: [], actions: [] };
      // What the dead had taken over from others becomes this one's too (their agents still answer them).
      await c.query(
        "UPDATE coordinators SET adopted_by = $1, adopted_at = $2 WHERE id = ANY($3::text[]) OR adopted_by = ANY($3::text[])",
        [id, nowMs, dead],
      );
      const taken = await c.query<{ id: string }>(
        `UPDATE actions SET owner = $1 WHERE owner = ANY($2::text[]) AND completed_at IS NULL RETURNING id`,
        [id, dead],
      );
      return { from: dead, actions: taken.rows.map((r) => r.id) };
    });
  }

  async owned(id: string): Promise<string[]> {
    // Released actions with no owner (written before there were owners) are claimed here, each by
    // the first coordinator to start: UPDATE takes the row's lock and checks the owner again.
    const { rows } = await this.pool.query<{ id: string }>(
      `WITH claimed AS (
         UPDATE actions SET owner = $1
         WHERE completed_at IS NULL AND owner = '' AND state = ${ActionState.ACTION_STATE_RELEASED}
         RETURNING id)
       SELECT id FROM claimed UNION SELECT id FROM actions WHERE completed_at IS NULL AND owner = $1`,
      [id],
    );
    return rows.map((r) => r.id);
  }

  async adoptedBy(id: string): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM coordinators WHERE adopted_by = $1 ORDER BY id COLLATE "C"`,
      [id],
    );
    return rows.map((r) => r.id);
  }

  async swapPending(expected: Uint8Array, next: StoredAction, owner: string): Promise<boolean> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ signed: Buffer; state: number; completed_at: number | null }>(
        "SELECT signed, state, completed_at FROM actions WHERE id = $1 FOR UPDATE",
        [next.id],
      );
      const row = rows[0];
      const waiting =
        row?.state === ActionState.ACTION_STATE_PENDING_APPROVAL &&
        row.completed_at === null &&
        Buffer.compare(row.signed, expected) === 0;
      if (waiting) await writeAction(client, next, owner);
      return waiting;
    });
  }

  async clock(): Promise<number> {
    const { rows } = await this.pool.query<{ ms: number }>(
      "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms",
    );
    return rows[0]!.ms;
  }

  async ownerOf(actionId: string): Promise<string> {
    const { rows } = await this.pool.query<{ owner: string }>("SELECT owner FROM actions WHERE id = $1", [
      actionId,
    ]);
    return rows[0]?.owner ?? "";
  }

  async alive(nowMs: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM coordinators WHERE lease_until >= $1 ORDER BY id COLLATE "C"`,
      [nowMs],
    );
    return rows.map((r) => r.id);
  }

  async leave(id: string): Promise<void> {
    await this.pool.query("UPDATE coordinators SET lease_until = 0 WHERE id = $1", [id]);
  }
}
