// npm run bench:pg-clients -- [--results N] [--batch B] [--rounds R]
//
// Which PostgreSQL client for the coordinator's store (issue 25): `pg`
// (node-postgres) or `postgres` (postgres.js), on the write the coordinator
// does most: results arriving with their commands' new states, applied in
// batches as the write batcher gathers them. A cluster of the bench's own
// (initdb on a free port), the schema migrated, N commands stored pending,
// then N results written B at a time, with each client in turn, R rounds.
// Prints results stored per second for each (median). The last line printed
// is one JSON object.
import { parseArgs } from "node:util";
import pg from "pg";
import postgres from "postgres";
import { applyPgBatch } from "../coordinator/store/pg-batch.js";
import { migratePg } from "../coordinator/store/pg-schema.js";
import { emptyWriteBatch, type StoredCommand, type StoredResult } from "../coordinator/store/store.js";
import { startPostgres } from "../test/helpers/postgres.js";
import { storedAction, storedCommand } from "../test/helpers/store-fixtures.js";

const { values } = parseArgs({
  options: {
    results: { type: "string", default: "10000" },
    batch: { type: "string", default: "1000" },
    rounds: { type: "string", default: "3" },
  },
});
const n = Number(values.results);
const batchSize = Number(values.batch);
const rounds = Number(values.rounds);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const cluster = await startPostgres();
const pool = new pg.Pool({ connectionString: cluster.url, max: 4 });
// An idle client told by the server it is shutting down (57P01, at the end) says so here, not as a crash.
pool.on("error", () => undefined);
const client = await pool.connect();
await migratePg(client);
client.release();
const sql = postgres(cluster.url, { max: 4, onnotice: () => undefined });

// What an agent's answer weighs on the wire: a file match or two.
const payload = Buffer.alloc(600, 7);

async function seed(round: number, label: string): Promise<{ actionId: string; commands: StoredCommand[] }> {
  const actionId = `${label}-${round}`;
  const b = emptyWriteBatch();
  b.actions.push(storedAction(actionId, { name: "bench", signed: Buffer.from([1]), expiresAtMs: 2 }));
  for (let i = 0; i < n; i++) {
    b.commands.push(
      storedCommand(`${actionId}-c${i}`, actionId, `agent-${i}`, {
        status: 2,
        sentAtMs: 1,
        createdAtMs: 1,
        updatedAtMs: 1,
      }),
    );
  }
  const c = await pool.connect();
  await applyPgBatch(c, b);
  c.release();
  return { actionId, commands: b.commands };
}

function answers(actionId: string, commands: StoredCommand[], from: number) {
  const cs = commands
    .slice(from, from + batchSize)
    .map((c) => ({ ...c, status: 4, found: true, updatedAtMs: 5 }));
  const rs: StoredResult[] = cs.map((c) => ({
    commandId: c.id,
    actionId,
    agentId: c.agentId,
    found: true,
    payload,
    receivedAtMs: 5,
  }));
  return { cs, rs };
}

async function withPg(round: number): Promise<number> {
  const { actionId, commands } = await seed(round, "pg");
  const started = performance.now();
  const c = await pool.connect();
  for (let i = 0; i < n; i += batchSize) {
    const { cs, rs } = answers(actionId, commands, i);
    await applyPgBatch(c, { ...emptyWriteBatch(), commands: cs, results: rs });
  }
  c.release();
  return performance.now() - started;
}

async function withPostgresJs(round: number): Promise<number> {
  const { actionId, commands } = await seed(round, "postgresjs");
  const started = performance.now();
  for (let i = 0; i < n; i += batchSize) {
    const { cs, rs } = answers(actionId, commands, i);
    await sql.begin(async (tx) => {
      const commandRows = cs.map((c) => ({
        id: c.id,
        action_id: c.actionId,
        agent_id: c.agentId,
        status: c.status,
        problem_code: c.problemCode,
        problem_message: c.problemMessage,
        found: c.found,
        created_at: c.createdAtMs,
        sent_at: c.sentAtMs,
        acked_at: c.ackedAtMs,
        updated_at: c.updatedAtMs,
      }));
      await tx`INSERT INTO commands ${tx(commandRows)}
        ON CONFLICT (id) DO UPDATE SET status = excluded.status, found = excluded.found,
          updated_at = excluded.updated_at, acked_at = excluded.acked_at`;
      const resultRows = rs.map((r) => ({
        command_id: r.commandId,
        action_id: r.actionId,
        agent_id: r.agentId,
        found: r.found,
        payload: Buffer.from(r.payload),
        received_at: r.receivedAtMs,
      }));
      await tx`INSERT INTO results ${tx(resultRows)} ON CONFLICT (command_id) DO NOTHING`;
    });
  }
  return performance.now() - started;
}

const figures = { pg: [] as number[], postgres: [] as number[] };
try {
  for (let r = 0; r < rounds; r++) {
    figures.pg.push(await withPg(r));
    figures.postgres.push(await withPostgresJs(r));
  }
  const stored = await pool.query<{ n: string }>("SELECT count(*) AS n FROM results");
  if (Number(stored.rows[0]!.n) !== n * rounds * 2) throw new Error(`stored ${stored.rows[0]!.n} results`);
  const rate = (ms: number) => Math.round((n / ms) * 1000);
  console.log(
    JSON.stringify({
      bench: "pg-clients",
      results: n,
      batch: batchSize,
      rounds,
      pg_ms: Math.round(median(figures.pg)),
      pg_results_per_s: rate(median(figures.pg)),
      postgres_ms: Math.round(median(figures.postgres)),
      postgres_results_per_s: rate(median(figures.postgres)),
    }),
  );
} finally {
  await sql.end();
  await pool.end();
  await cluster.stop();
}
