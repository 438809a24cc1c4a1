import type pg from "pg";

// The PostgreSQL store's schema (issue 25: several coordinators on one
// database), as versioned migrations. Every coordinator runs them at start
// under one advisory lock, so two starting together never race: the second
// waits, then finds the schema current. Released migrations are never edited,
// only appended. Sequence columns (`seq`) are BIGSERIAL: export cursors and
// alert followers read by them, and a sequence never hands a value out twice.

/** pg_advisory_lock key: "dragnet" in ASCII, as a number. */
export const MIGRATION_LOCK = 0x647261676e6574;

export const PG_MIGRATIONS: readonly string[] = [
  `
CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  os TEXT NOT NULL,
  os_release TEXT NOT NULL,
  arch TEXT NOT NULL,
  version TEXT NOT NULL,
  addresses JSONB NOT NULL,
  tags JSONB NOT NULL,
  isolated BOOLEAN NOT NULL,
  started_at BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  first_seen BIGINT NOT NULL,
  interval_ms INTEGER NOT NULL
);
CREATE TABLE actions (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  target TEXT NOT NULL,
  signed BYTEA NOT NULL,
  signer_key_ids JSONB NOT NULL,
  signer_names JSONB NOT NULL,
  modules JSONB NOT NULL,
  incident_id TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  valid_from BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  submitted_at BIGINT NOT NULL,
  timeout_ms INTEGER NOT NULL,
  completed_at BIGINT,
  state SMALLINT NOT NULL,
  weight INTEGER NOT NULL,
  required_weight INTEGER NOT NULL,
  schedule_id TEXT NOT NULL DEFAULT '',
  run INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX actions_open ON actions (completed_at) WHERE completed_at IS NULL;
CREATE TABLE commands (
  id TEXT PRIMARY KEY,
  action_id TEXT NOT NULL REFERENCES actions (id),
  agent_id TEXT NOT NULL,
  status SMALLINT NOT NULL,
  problem_code TEXT NOT NULL,
  problem_message TEXT NOT NULL,
  found BOOLEAN NOT NULL,
  created_at BIGINT NOT NULL,
  sent_at BIGINT NOT NULL,
  acked_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  UNIQUE (action_id, agent_id)
);
CREATE TABLE results (
  seq BIGSERIAL UNIQUE,
  command_id TEXT PRIMARY KEY REFERENCES commands (id),
  action_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  found BOOLEAN NOT NULL,
  payload BYTEA NOT NULL,
  received_at BIGINT NOT NULL
);
CREATE INDEX results_action ON results (action_id, found);
CREATE TABLE audit (
  seq BIGSERIAL PRIMARY KEY,
  at BIGINT NOT NULL,
  actor TEXT NOT NULL,
  event TEXT NOT NULL,
  action_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  chain TEXT NOT NULL,
  n BIGINT NOT NULL,
  prev_hash TEXT NOT NULL,
  entry_hash TEXT NOT NULL,
  seal TEXT NOT NULL
);
CREATE INDEX audit_action ON audit (action_id);
CREATE INDEX audit_chain ON audit (chain, n);
CREATE TABLE audit_heads (chain TEXT PRIMARY KEY, n BIGINT NOT NULL, hash TEXT NOT NULL, seal TEXT NOT NULL);
CREATE TABLE alerts (
  seq BIGSERIAL PRIMARY KEY,
  id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  at BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  payload BYTEA NOT NULL,
  UNIQUE (agent_id, id)
);
CREATE INDEX alerts_received ON alerts (received_at);
CREATE TABLE evidence (
  seq BIGSERIAL UNIQUE,
  id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  incident_id TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  payload BYTEA NOT NULL
);
CREATE INDEX evidence_incident ON evidence (incident_id, received_at);
CREATE TABLE incidents (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  severity TEXT NOT NULL,
  phase TEXT NOT NULL,
  opened_at BIGINT NOT NULL,
  opened_by TEXT NOT NULL,
  head_pages INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  head_seal TEXT NOT NULL
);
CREATE TABLE journal (
  row BIGSERIAL PRIMARY KEY,
  incident_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at BIGINT NOT NULL,
  author TEXT NOT NULL,
  author_key_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  content TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  page_hash TEXT NOT NULL,
  author_signature TEXT NOT NULL,
  seal TEXT NOT NULL,
  -- One page number per incident: two coordinators appending at once cannot both write page n.
  UNIQUE (incident_id, seq)
);
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL,
  tags JSONB NOT NULL,
  uses INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  expires_at BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at BIGINT
);
CREATE TABLE enrollments (
  agent_id TEXT PRIMARY KEY,
  public_key TEXT NOT NULL,
  token_id TEXT NOT NULL,
  hostname TEXT NOT NULL,
  enrolled_at BIGINT NOT NULL
);
CREATE TABLE revoked_agents (
  agent_id TEXT PRIMARY KEY,
  revoked_at BIGINT NOT NULL,
  revoked_by TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE TABLE schedules (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  target TEXT NOT NULL,
  signed BYTEA NOT NULL,
  signer_names JSONB NOT NULL,
  modules JSONB NOT NULL,
  incident_id TEXT NOT NULL,
  every_ms INTEGER NOT NULL,
  runs INTEGER NOT NULL,
  first_run_at BIGINT NOT NULL,
  ends_at BIGINT NOT NULL,
  submitted_at BIGINT NOT NULL,
  last_run INTEGER NOT NULL DEFAULT 0,
  stopped_at BIGINT,
  stopped_by TEXT NOT NULL DEFAULT '',
  stop_reason TEXT NOT NULL DEFAULT '',
  stop_signed BYTEA
);
CREATE TABLE schedule_runs (
  schedule_id TEXT NOT NULL REFERENCES schedules (id),
  run INTEGER NOT NULL,
  action_id TEXT NOT NULL,
  issued_at BIGINT NOT NULL,
  targeted INTEGER NOT NULL,
  compared INTEGER NOT NULL DEFAULT 0,
  baselines INTEGER NOT NULL DEFAULT 0,
  changed INTEGER NOT NULL DEFAULT 0,
  added INTEGER NOT NULL DEFAULT 0,
  vanished INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (schedule_id, run)
);
CREATE TABLE schedule_rows (
  schedule_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  run INTEGER NOT NULL,
  rows JSONB NOT NULL,
  PRIMARY KEY (schedule_id, agent_id)
);
CREATE TABLE export_cursors (sink TEXT NOT NULL, kind TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (sink, kind));
`,
  // Several coordinators: each holds a lease it renews; an open action is dispatched by its owner,
  // and a coordinator whose lease ran out has its open actions adopted by one that is alive.
  `
ALTER TABLE actions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX actions_owner_open ON actions (owner) WHERE completed_at IS NULL;
CREATE TABLE coordinators (
  id TEXT PRIMARY KEY,
  lease_until BIGINT NOT NULL,
  started_at BIGINT NOT NULL,
  adopted_by TEXT NOT NULL DEFAULT '',
  adopted_at BIGINT
);
`,
];

/**
 * Brings the database to the newest schema, under an advisory lock held for
 * the whole of it; refuses a database newer than this coordinator knows.
 * Returns the migrations it applied (0 when another coordinator had).
 */
export async function migratePg(client: pg.ClientBase): Promise<number> {
  await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
  try {
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    );
    const { rows } = await client.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_version");
    const current = rows[0]?.v ?? 0;
    if (current > PG_MIGRATIONS.length) {
      throw new Error(
        `the database has schema ${current}, newer than this coordinator knows (${PG_MIGRATIONS.length})`,
      );
    }
    for (let v = current; v < PG_MIGRATIONS.length; v++) {
      await client.query("BEGIN");
      try {
        await client.query(PG_MIGRATIONS[v]!);
        await client.query("INSERT INTO schema_version (version) VALUES ($1)", [v + 1]);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw err;
      }
    }
    return PG_MIGRATIONS.length - current;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]);
  }
}
