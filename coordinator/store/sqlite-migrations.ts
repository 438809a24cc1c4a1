import type Database from "better-sqlite3";

// The SQLite store's schema, as migrations applied at open.

// Migrations in order: MIGRATIONS[i] takes a database from version i to i + 1
// (PRAGMA user_version). Released migrations are never edited, only appended.
const MIGRATIONS = [
  `
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  os TEXT NOT NULL,
  os_release TEXT NOT NULL,
  arch TEXT NOT NULL,
  version TEXT NOT NULL,
  addresses TEXT NOT NULL,
  tags TEXT NOT NULL,
  isolated INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  first_seen INTEGER NOT NULL,
  interval_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS actions (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  target TEXT NOT NULL,
  signed BLOB NOT NULL,
  signer_key_ids TEXT NOT NULL,
  signer_names TEXT NOT NULL,
  modules TEXT NOT NULL,
  incident_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  valid_from INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  submitted_at INTEGER NOT NULL,
  timeout_ms INTEGER NOT NULL,
  completed_at INTEGER
);
CREATE INDEX IF NOT EXISTS actions_open ON actions (completed_at) WHERE completed_at IS NULL;
CREATE TABLE IF NOT EXISTS commands (
  id TEXT PRIMARY KEY,
  action_id TEXT NOT NULL REFERENCES actions (id),
  agent_id TEXT NOT NULL,
  status INTEGER NOT NULL,
  problem_code TEXT NOT NULL,
  problem_message TEXT NOT NULL,
  found INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  sent_at INTEGER NOT NULL,
  acked_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (action_id, agent_id)
);
CREATE TABLE IF NOT EXISTS results (
  command_id TEXT PRIMARY KEY REFERENCES commands (id),
  action_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  found INTEGER NOT NULL,
  payload BLOB NOT NULL,
  received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS results_action ON results (action_id, found);
`,
  // 2: the two-person rule (actions held for approval) and the audit log.
  `
ALTER TABLE actions ADD COLUMN state INTEGER NOT NULL DEFAULT 2;
ALTER TABLE actions ADD COLUMN weight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN required_weight INTEGER NOT NULL DEFAULT 0;
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  event TEXT NOT NULL,
  action_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX audit_action ON audit (action_id);
`,
  // 3: alerts from the agents' persistent watches.
  `
CREATE TABLE alerts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  payload BLOB NOT NULL,
  UNIQUE (agent_id, id)
);
CREATE INDEX alerts_received ON alerts (received_at);
`,
  // 4: evidence collected from agents (the files live in the evidence directory).
  `
CREATE TABLE evidence (
  id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  incident_id TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX evidence_incident ON evidence (incident_id, received_at);
`,
  // 5: incidents and their notebooks (an append-only chain of sealed pages).
  `
CREATE TABLE incidents (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  severity TEXT NOT NULL,
  phase TEXT NOT NULL,
  opened_at INTEGER NOT NULL,
  opened_by TEXT NOT NULL,
  head_pages INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  head_seal TEXT NOT NULL
);
CREATE TABLE journal (
  row INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  author TEXT NOT NULL,
  author_key_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  content TEXT NOT NULL,
  content_sha256 TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  page_hash TEXT NOT NULL,
  author_signature TEXT NOT NULL,
  seal TEXT NOT NULL
);
CREATE INDEX journal_incident ON journal (incident_id, row);
`,
  // 6: enrolment tokens and the agents that enrolled with them.
  `
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL,
  tags TEXT NOT NULL,
  uses INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE enrollments (
  agent_id TEXT PRIMARY KEY,
  public_key TEXT NOT NULL,
  token_id TEXT NOT NULL,
  hostname TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL
);
`,
  // 7: the audit log as sealed chains, one per coordinator (common/audit-chain.ts);
  // entries from before are chained at the next start (n = 0 until then).
  `
ALTER TABLE audit ADD COLUMN chain TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN entry_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN seal TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_chain ON audit (chain, n);
CREATE TABLE audit_heads (
  chain TEXT PRIMARY KEY,
  n INTEGER NOT NULL,
  hash TEXT NOT NULL,
  seal TEXT NOT NULL
);
`,
  // 8: agents whose credentials were revoked.
  `
CREATE TABLE revoked_agents (
  agent_id TEXT PRIMARY KEY,
  revoked_at INTEGER NOT NULL,
  revoked_by TEXT NOT NULL,
  reason TEXT NOT NULL
);
`,
  // 9: signed schedules, their runs and each host's last rows; export sinks' cursors.
  `
ALTER TABLE actions ADD COLUMN schedule_id TEXT NOT NULL DEFAULT '';
ALTER TABLE actions ADD COLUMN run INTEGER NOT NULL DEFAULT 0;
CREATE TABLE schedules (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  target TEXT NOT NULL,
  signed BLOB NOT NULL,
  signer_names TEXT NOT NULL,
  modules TEXT NOT NULL,
  incident_id TEXT NOT NULL,
  every_ms INTEGER NOT NULL,
  runs INTEGER NOT NULL,
  first_run_at INTEGER NOT NULL,
  ends_at INTEGER NOT NULL,
  submitted_at INTEGER NOT NULL,
  last_run INTEGER NOT NULL DEFAULT 0,
  stopped_at INTEGER,
  stopped_by TEXT NOT NULL DEFAULT '',
  stop_reason TEXT NOT NULL DEFAULT '',
  stop_signed BLOB
);
CREATE TABLE schedule_runs (
  schedule_id TEXT NOT NULL REFERENCES schedules (id),
  run INTEGER NOT NULL,
  action_id TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
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
  rows TEXT NOT NULL,
  PRIMARY KEY (schedule_id, agent_id)
);
CREATE TABLE export_cursors (
  sink TEXT NOT NULL,
  kind TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (sink, kind)
);
`,
];

/** Brings a database to the newest schema; refuses one newer than this coordinator knows. */
export function migrate(db: Database.Database, path: string): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new Error(
      `database ${path} has schema ${version}, newer than this coordinator knows (${MIGRATIONS.length})`,
    );
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
