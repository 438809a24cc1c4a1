import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPgBatch } from "../../coordinator/store/pg-batch.js";
import { MIGRATION_LOCK, migratePg, PG_MIGRATIONS } from "../../coordinator/store/pg-schema.js";
import { emptyWriteBatch, type WriteBatch } from "../../coordinator/store/store.js";
import { type PostgresCluster, startPostgres } from "../helpers/postgres.js";
import { storedAction, storedCommand } from "../helpers/store-fixtures.js";

// The first pieces of the PostgreSQL store (issue 25), against a cluster the
// test starts itself: two coordinators migrating at once apply the schema
// once; a batch of results written twice, or by two coordinators at once, is
// stored once per command; a notebook page number can be written only once.

let cluster: PostgresCluster;
let pool: pg.Pool;

beforeAll(async () => {
  cluster = await startPostgres();
  pool = new pg.Pool({ connectionString: cluster.url, max: 8 });
  // An idle client told by the server it is shutting down (57P01, at the end) says so here, not as a crash.
  pool.on("error", () => undefined);
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await cluster?.stop();
});

function answers(actionId: string, count: number): WriteBatch {
  const b = emptyWriteBatch();
  for (let i = 0; i < count; i++) {
    b.results.push({
      commandId: `${actionId}-c${i}`,
      actionId,
      agentId: `agent-${i}`,
      found: i % 2 === 0,
      payload: Buffer.from(`answer ${i}`),
      receivedAtMs: 1000 + i,
    });
  }
  return b;
}

function action(id: string, count: number): WriteBatch {
  const b = emptyWriteBatch();
  b.actions.push(storedAction(id, { expiresAtMs: 2 }));
  for (let i = 0; i < count; i++) {
    b.commands.push(storedCommand(`${id}-c${i}`, id, `agent-${i}`, { status: 2, sentAtMs: 1 }));
  }
  return b;
}

async function apply(batch: WriteBatch): Promise<void> {
  const c = await pool.connect();
  try {
    await applyPgBatch(c, batch);
  } finally {
    c.release();
  }
}

describe("the PostgreSQL schema", () => {
  it("is migrated once when two coordinators start together (an advisory lock orders them)", async () => {
    const [a, b] = await Promise.all([pool.connect(), pool.connect()]);
    try {
      const applied = await Promise.all([migratePg(a), migratePg(b)]);
      expect(applied.sort()).toEqual([0, PG_MIGRATIONS.length]);
      const versions = await pool.query("SELECT version FROM schema_version ORDER BY version");
      expect(versions.rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((_, i) => i + 1));
      // The lock is given back: nobody holds it now.
      const held = await pool.query(
        "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1",
        [MIGRATION_LOCK & 0xffffffff],
      );
      expect(held.rows[0].n).toBe(0);
    } finally {
      a.release();
      b.release();
    }
  });

  it("stores each command's result once, however often and by however many coordinators it is written", async () => {
    await apply(action("act1", 500));
    const batch = answers("act1", 500);
    await apply(batch);
    await apply(batch); // redelivered
    await Promise.all([apply(answers("act1", 500)), apply(answers("act1", 500))]); // two coordinators at once
    const rows = await pool.query<{ n: number; found: number }>(
      "SELECT count(*)::int AS n, count(*) FILTER (WHERE found)::int AS found FROM results WHERE action_id = 'act1'",
    );
    expect(rows.rows[0]).toEqual({ n: 500, found: 250 });
    const payload = await pool.query("SELECT payload FROM results WHERE command_id = 'act1-c7'");
    expect(Buffer.from(payload.rows[0].payload).toString()).toBe("answer 7");
    // Each result has its own place in the export order.
    const seqs = await pool.query("SELECT count(DISTINCT seq)::int AS n FROM results");
    expect(seqs.rows[0].n).toBe(500);
  });

  it("lets a notebook page number be written once per incident", async () => {
    const page = (author: string) =>
      pool.query(
        `INSERT INTO journal (incident_id, seq, at, author, author_key_id, kind, content, content_sha256,
                              prev_hash, page_hash, author_signature, seal)
         VALUES ('inc1', 2, 1, $1, '', 'note', '{}', '', '', '', '', '')`,
        [author],
      );
    const outcomes = await Promise.allSettled([page("alice"), page("bob")]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(["fulfilled", "rejected"]);
    const rejected = outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult;
    expect((rejected.reason as { code: string }).code).toBe("23505"); // unique_violation
  });
});
