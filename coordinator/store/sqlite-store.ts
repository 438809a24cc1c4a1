import Database from "better-sqlite3";
import type { Page } from "../../common/journal.js";
import type { ActionState, AuditEntry, CommandStatus } from "../../proto/api.js";
import type {
  Store,
  StoredAction,
  StoredAgent,
  StoredAlert,
  StoredCommand,
  StoredEnrollment,
  StoredEnrollmentToken,
  StoredEvidence,
  StoredIncident,
  StoredResult,
  WriteBatch,
} from "./store.js";

// The default store: one embedded SQLite file in WAL mode. Writes arrive in
// batches (one transaction each); reads are plain prepared statements.

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
];

interface AgentRow {
  id: string;
  hostname: string;
  os: string;
  os_release: string;
  arch: string;
  version: string;
  addresses: string;
  tags: string;
  isolated: number;
  started_at: number;
  last_seen: number;
  first_seen: number;
  interval_ms: number;
}

interface ActionRow {
  id: string;
  name: string;
  target: string;
  signed: Buffer;
  signer_key_ids: string;
  signer_names: string;
  modules: string;
  incident_id: string;
  created_at: number;
  valid_from: number;
  expires_at: number;
  submitted_at: number;
  timeout_ms: number;
  completed_at: number | null;
  state: number;
  weight: number;
  required_weight: number;
}

interface CommandRow {
  id: string;
  action_id: string;
  agent_id: string;
  status: number;
  problem_code: string;
  problem_message: string;
  found: number;
  created_at: number;
  sent_at: number;
  acked_at: number;
  updated_at: number;
}

interface ResultRow {
  command_id: string;
  action_id: string;
  agent_id: string;
  found: number;
  payload: Buffer;
  received_at: number;
}

const toAgent = (r: AgentRow): StoredAgent => ({
  id: r.id,
  hostname: r.hostname,
  os: r.os,
  osRelease: r.os_release,
  arch: r.arch,
  version: r.version,
  addresses: JSON.parse(r.addresses) as string[],
  tags: JSON.parse(r.tags) as Record<string, string>,
  isolated: r.isolated !== 0,
  startedAtMs: r.started_at,
  lastSeenMs: r.last_seen,
  firstSeenMs: r.first_seen,
  intervalMs: r.interval_ms,
});

const toAction = (r: ActionRow): StoredAction => ({
  id: r.id,
  name: r.name,
  target: r.target,
  signed: r.signed,
  signerKeyIds: JSON.parse(r.signer_key_ids) as string[],
  signerNames: JSON.parse(r.signer_names) as string[],
  modules: JSON.parse(r.modules) as string[],
  incidentId: r.incident_id,
  createdAtMs: r.created_at,
  validFromMs: r.valid_from,
  expiresAtMs: r.expires_at,
  submittedAtMs: r.submitted_at,
  timeoutMs: r.timeout_ms,
  completedAtMs: r.completed_at ?? undefined,
  state: r.state as ActionState,
  weight: r.weight,
  requiredWeight: r.required_weight,
});

const toCommand = (r: CommandRow): StoredCommand => ({
  id: r.id,
  actionId: r.action_id,
  agentId: r.agent_id,
  status: r.status as CommandStatus,
  problemCode: r.problem_code,
  problemMessage: r.problem_message,
  found: r.found !== 0,
  createdAtMs: r.created_at,
  sentAtMs: r.sent_at,
  ackedAtMs: r.acked_at,
  updatedAtMs: r.updated_at,
});

const toResult = (r: ResultRow): StoredResult => ({
  commandId: r.command_id,
  actionId: r.action_id,
  agentId: r.agent_id,
  found: r.found !== 0,
  payload: r.payload,
  receivedAtMs: r.received_at,
});

interface AlertRow {
  seq: number;
  id: string;
  agent_id: string;
  at: number;
  received_at: number;
  payload: Buffer;
}

const toAlert = (r: AlertRow): StoredAlert => ({
  seq: r.seq,
  id: r.id,
  agentId: r.agent_id,
  atMs: r.at,
  receivedAtMs: r.received_at,
  payload: r.payload,
});

interface IncidentRow {
  id: string;
  title: string;
  severity: string;
  phase: string;
  opened_at: number;
  opened_by: string;
  head_pages: number;
  head_hash: string;
  head_seal: string;
}

const toIncident = (r: IncidentRow): StoredIncident => ({
  id: r.id,
  title: r.title,
  severity: r.severity,
  phase: r.phase,
  openedAtMs: r.opened_at,
  openedBy: r.opened_by,
  headPages: r.head_pages,
  headHash: r.head_hash,
  headSeal: r.head_seal,
});

interface PageRow {
  incident_id: string;
  seq: number;
  at: number;
  author: string;
  author_key_id: string;
  kind: string;
  content: string;
  content_sha256: string;
  prev_hash: string;
  page_hash: string;
  author_signature: string;
  seal: string;
}

interface EvidenceRow {
  id: string;
  agent_id: string;
  incident_id: string;
  received_at: number;
  payload: Buffer;
}

const toEvidence = (r: EvidenceRow): StoredEvidence => ({
  id: r.id,
  agentId: r.agent_id,
  incidentId: r.incident_id,
  receivedAtMs: r.received_at,
  payload: r.payload,
});

interface TokenRow {
  id: string;
  secret_sha256: string;
  tags: string;
  uses: number;
  used: number;
  expires_at: number;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}

interface EnrollmentRow {
  agent_id: string;
  public_key: string;
  token_id: string;
  hostname: string;
  enrolled_at: number;
}

const toToken = (r: TokenRow): StoredEnrollmentToken => ({
  id: r.id,
  secretSha256: r.secret_sha256,
  tags: JSON.parse(r.tags) as Record<string, string>,
  uses: r.uses,
  used: r.used,
  expiresAtMs: r.expires_at,
  createdAtMs: r.created_at,
  createdBy: r.created_by,
  ...(r.revoked_at === null ? {} : { revokedAtMs: r.revoked_at }),
});

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly applyTx: (batch: WriteBatch) => void;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    // WAL with synchronous=NORMAL survives a process crash; only a power loss
    // can lose the last transactions, and results are redelivered by then.
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    this.migrate(path);
    const db = this.db;
    this.stmts = {
      upsertAgent: db.prepare(`
        INSERT INTO agents (id, hostname, os, os_release, arch, version, addresses, tags, isolated,
                            started_at, last_seen, first_seen, interval_ms)
        VALUES (@id, @hostname, @os, @osRelease, @arch, @version, @addresses, @tags, @isolated,
                @startedAtMs, @lastSeenMs, @firstSeenMs, @intervalMs)
        ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, os = excluded.os,
          os_release = excluded.os_release, arch = excluded.arch, version = excluded.version,
          addresses = excluded.addresses, tags = excluded.tags, isolated = excluded.isolated,
          started_at = excluded.started_at, last_seen = excluded.last_seen, interval_ms = excluded.interval_ms`),
      insertAction: db.prepare(`
        INSERT INTO actions (id, name, target, signed, signer_key_ids, signer_names, modules, incident_id,
                             created_at, valid_from, expires_at, submitted_at, timeout_ms, completed_at,
                             state, weight, required_weight)
        VALUES (@id, @name, @target, @signed, @signerKeyIds, @signerNames, @modules, @incidentId, @createdAtMs,
                @validFromMs, @expiresAtMs, @submittedAtMs, @timeoutMs, @completedAtMs,
                @state, @weight, @requiredWeight)
        ON CONFLICT (id) DO UPDATE SET signed = excluded.signed, signer_key_ids = excluded.signer_key_ids,
          signer_names = excluded.signer_names, state = excluded.state, weight = excluded.weight,
          completed_at = COALESCE(actions.completed_at, excluded.completed_at)`),
      insertAudit: db.prepare(`
        INSERT INTO audit (at, actor, event, action_id, agent_id, code, message)
        VALUES (@atMs, @actor, @event, @actionId, @agentId, @code, @message)`),
      listAudit: db.prepare("SELECT * FROM audit ORDER BY seq DESC LIMIT ?"),
      listAuditOf: db.prepare("SELECT * FROM audit WHERE action_id = ? ORDER BY seq DESC LIMIT ?"),
      pendingActions: db.prepare("SELECT * FROM actions WHERE state = 1 AND completed_at IS NULL"),
      listPending: db.prepare(
        "SELECT * FROM actions WHERE state = 1 AND completed_at IS NULL ORDER BY submitted_at DESC, id DESC LIMIT ?",
      ),
      upsertCommand: db.prepare(`
        INSERT INTO commands (id, action_id, agent_id, status, problem_code, problem_message, found,
                              created_at, sent_at, acked_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET status = excluded.status, problem_code = excluded.problem_code,
          problem_message = excluded.problem_message, found = excluded.found, sent_at = excluded.sent_at,
          acked_at = excluded.acked_at, updated_at = excluded.updated_at`),
      insertResult: db.prepare(`
        INSERT OR IGNORE INTO results (command_id, action_id, agent_id, found, payload, received_at)
        VALUES (?, ?, ?, ?, ?, ?)`),
      complete: db.prepare("UPDATE actions SET completed_at = ? WHERE id = ?"),
      loadAgents: db.prepare("SELECT * FROM agents"),
      getAction: db.prepare("SELECT * FROM actions WHERE id = ?"),
      byPrefix: db.prepare("SELECT id FROM actions WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"),
      listActions: db.prepare("SELECT * FROM actions ORDER BY submitted_at DESC, id DESC LIMIT ?"),
      openActions: db.prepare("SELECT * FROM actions WHERE completed_at IS NULL AND state = 2"),
      commandsOf: db.prepare("SELECT * FROM commands WHERE action_id = ?"),
      getCommand: db.prepare("SELECT * FROM commands WHERE id = ?"),
      resultsOf: db.prepare("SELECT * FROM results WHERE action_id = ?"),
      hasResult: db.prepare("SELECT 1 FROM results WHERE command_id = ?"),
      matched: db.prepare("SELECT agent_id FROM results WHERE action_id = ? AND found = 1"),
      insertAlert: db.prepare(`
        INSERT OR IGNORE INTO alerts (id, agent_id, at, received_at, payload) VALUES (?, ?, ?, ?, ?)`),
      alertsAfter: db.prepare("SELECT * FROM alerts WHERE seq > ? ORDER BY seq LIMIT ?"),
      insertEvidence: db.prepare(
        "INSERT OR IGNORE INTO evidence (id, agent_id, incident_id, received_at, payload) VALUES (?, ?, ?, ?, ?)",
      ),
      listEvidence: db.prepare("SELECT * FROM evidence ORDER BY received_at DESC, id DESC LIMIT ?"),
      listEvidenceOf: db.prepare(
        "SELECT * FROM evidence WHERE incident_id = ? ORDER BY received_at DESC, id DESC LIMIT ?",
      ),
      getEvidence: db.prepare("SELECT * FROM evidence WHERE id = ?"),
      putIncident: db.prepare(`
        INSERT INTO incidents (id, title, severity, phase, opened_at, opened_by, head_pages, head_hash, head_seal)
        VALUES (@id, @title, @severity, @phase, @openedAtMs, @openedBy, @headPages, @headHash, @headSeal)`),
      getIncident: db.prepare("SELECT * FROM incidents WHERE id = ?"),
      incidentsByPrefix: db.prepare("SELECT id FROM incidents WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"),
      listIncidents: db.prepare("SELECT * FROM incidents ORDER BY opened_at DESC, id DESC LIMIT ?"),
      insertPage: db.prepare(`
        INSERT INTO journal (incident_id, seq, at, author, author_key_id, kind, content, content_sha256,
                             prev_hash, page_hash, author_signature, seal)
        VALUES (@incidentId, @seq, @atMs, @author, @authorKeyId, @kind, @content, @contentSha256,
                @prevHash, @pageHash, @authorSignature, @seal)`),
      moveHead: db.prepare(
        "UPDATE incidents SET head_pages = ?, head_hash = ?, head_seal = ?, phase = COALESCE(?, phase) WHERE id = ?",
      ),
      pagesOf: db.prepare("SELECT * FROM journal WHERE incident_id = ? ORDER BY row"),
      alertsBefore: db.prepare(
        "SELECT * FROM alerts WHERE seq < ? AND received_at >= ? ORDER BY seq DESC LIMIT ?",
      ),
      insertToken: db.prepare(`
        INSERT INTO enrollment_tokens (id, secret_sha256, tags, uses, used, expires_at, created_at, created_by, revoked_at)
        VALUES (@id, @secretSha256, @tags, @uses, @used, @expiresAtMs, @createdAtMs, @createdBy, @revokedAtMs)`),
      listTokens: db.prepare("SELECT * FROM enrollment_tokens ORDER BY created_at DESC, id DESC LIMIT ?"),
      getToken: db.prepare("SELECT * FROM enrollment_tokens WHERE id = ?"),
      revokeToken: db.prepare(
        "UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
      ),
      useToken: db.prepare("UPDATE enrollment_tokens SET used = used + 1 WHERE id = ?"),
      getEnrollment: db.prepare("SELECT * FROM enrollments WHERE agent_id = ?"),
      putEnrollment: db.prepare(`
        INSERT INTO enrollments (agent_id, public_key, token_id, hostname, enrolled_at)
        VALUES (@agentId, @publicKey, @tokenId, @hostname, @enrolledAtMs)
        ON CONFLICT (agent_id) DO UPDATE SET public_key = excluded.public_key, token_id = excluded.token_id,
          hostname = excluded.hostname, enrolled_at = excluded.enrolled_at`),
    };
    this.applyTx = this.db.transaction((batch: WriteBatch) => {
      for (const a of batch.agents) {
        this.stmts.upsertAgent.run({
          ...a,
          addresses: JSON.stringify(a.addresses),
          tags: JSON.stringify(a.tags),
          isolated: a.isolated ? 1 : 0,
        });
      }
      for (const a of batch.actions) {
        this.stmts.insertAction.run({
          ...a,
          signed: Buffer.from(a.signed),
          signerKeyIds: JSON.stringify(a.signerKeyIds),
          signerNames: JSON.stringify(a.signerNames),
          completedAtMs: a.completedAtMs ?? null,
          modules: JSON.stringify(a.modules),
        });
      }
      // Positional and without copies: thousands of these go into one transaction during a sweep.
      for (const c of batch.commands) {
        this.stmts.upsertCommand.run(
          c.id,
          c.actionId,
          c.agentId,
          c.status,
          c.problemCode,
          c.problemMessage,
          c.found ? 1 : 0,
          c.createdAtMs,
          c.sentAtMs,
          c.ackedAtMs,
          c.updatedAtMs,
        );
      }
      for (const r of batch.results) {
        const payload = Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength);
        this.stmts.insertResult.run(
          r.commandId,
          r.actionId,
          r.agentId,
          r.found ? 1 : 0,
          payload,
          r.receivedAtMs,
        );
      }
      for (const c of batch.completed) this.stmts.complete.run(c.atMs, c.actionId);
      for (const e of batch.audit) this.stmts.insertAudit.run(e);
      for (const e of batch.evidence) {
        this.stmts.insertEvidence.run(e.id, e.agentId, e.incidentId, e.receivedAtMs, Buffer.from(e.payload));
      }
      for (const a of batch.alerts) {
        this.stmts.insertAlert.run(a.id, a.agentId, a.atMs, a.receivedAtMs, Buffer.from(a.payload));
      }
    });
  }

  private migrate(path: string): void {
    const version = this.db.pragma("user_version", { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `database ${path} has schema ${version}, newer than this coordinator knows (${MIGRATIONS.length})`,
      );
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  apply(batch: WriteBatch): void {
    this.applyTx(batch);
  }

  loadAgents(): StoredAgent[] {
    return (this.stmts.loadAgents.all() as AgentRow[]).map(toAgent);
  }

  getAction(id: string): StoredAction | undefined {
    const row = this.stmts.getAction.get(id) as ActionRow | undefined;
    return row ? toAction(row) : undefined;
  }

  actionIdsByPrefix(prefix: string, limit: number): string[] {
    // A range scan on the primary key; the prefix is a bound value, never SQL.
    const upper = `${prefix}\uffff`;
    return (this.stmts.byPrefix.all(prefix, upper, limit) as Array<{ id: string }>).map((r) => r.id);
  }

  listActions(limit: number, pendingOnly = false): StoredAction[] {
    return ((pendingOnly ? this.stmts.listPending : this.stmts.listActions).all(limit) as ActionRow[]).map(
      toAction,
    );
  }

  pendingActions(): StoredAction[] {
    return (this.stmts.pendingActions.all() as ActionRow[]).map(toAction);
  }

  listAudit(limit: number, actionId?: string): AuditEntry[] {
    const rows = (
      actionId ? this.stmts.listAuditOf.all(actionId, limit) : this.stmts.listAudit.all(limit)
    ) as Array<{
      at: number;
      actor: string;
      event: string;
      action_id: string;
      agent_id: string;
      code: string;
      message: string;
    }>;
    return rows.map((r) => ({
      atMs: r.at,
      actor: r.actor,
      event: r.event,
      actionId: r.action_id,
      agentId: r.agent_id,
      code: r.code,
      message: r.message,
    }));
  }

  openActions(): StoredAction[] {
    return (this.stmts.openActions.all() as ActionRow[]).map(toAction);
  }

  commandsOf(actionId: string): StoredCommand[] {
    return (this.stmts.commandsOf.all(actionId) as CommandRow[]).map(toCommand);
  }

  getCommand(id: string): StoredCommand | undefined {
    const row = this.stmts.getCommand.get(id) as CommandRow | undefined;
    return row ? toCommand(row) : undefined;
  }

  resultsOf(actionId: string): StoredResult[] {
    return (this.stmts.resultsOf.all(actionId) as ResultRow[]).map(toResult);
  }

  hasResult(commandId: string): boolean {
    return this.stmts.hasResult.get(commandId) !== undefined;
  }

  matchedAgents(actionId: string): string[] {
    return (this.stmts.matched.all(actionId) as Array<{ agent_id: string }>).map((r) => r.agent_id);
  }

  alertsAfter(afterSeq: number, limit: number): StoredAlert[] {
    return (this.stmts.alertsAfter.all(afterSeq, limit) as AlertRow[]).map(toAlert);
  }

  alertsBefore(beforeSeq: number, sinceMs: number, limit: number): StoredAlert[] {
    return (this.stmts.alertsBefore.all(beforeSeq, sinceMs, limit) as AlertRow[]).map(toAlert);
  }

  listEvidence(incidentId: string, limit: number): StoredEvidence[] {
    const rows = (
      incidentId ? this.stmts.listEvidenceOf.all(incidentId, limit) : this.stmts.listEvidence.all(limit)
    ) as EvidenceRow[];
    return rows.map(toEvidence);
  }

  getEvidence(id: string): StoredEvidence | undefined {
    const row = this.stmts.getEvidence.get(id) as EvidenceRow | undefined;
    return row && toEvidence(row);
  }

  putIncident(incident: StoredIncident): void {
    this.stmts.putIncident.run(incident);
  }

  getIncident(id: string): StoredIncident | undefined {
    const r = this.stmts.getIncident.get(id) as IncidentRow | undefined;
    return r && toIncident(r);
  }

  incidentIdsByPrefix(prefix: string, limit: number): string[] {
    return (this.stmts.incidentsByPrefix.all(prefix, `${prefix}\uffff`, limit) as Array<{ id: string }>).map(
      (r) => r.id,
    );
  }

  listIncidents(limit: number): StoredIncident[] {
    return (this.stmts.listIncidents.all(limit) as IncidentRow[]).map(toIncident);
  }

  appendPage(
    page: Page,
    head: Pick<StoredIncident, "headPages" | "headHash" | "headSeal">,
    phase?: string,
  ): void {
    this.db.transaction(() => {
      this.stmts.insertPage.run(page);
      this.stmts.moveHead.run(head.headPages, head.headHash, head.headSeal, phase ?? null, page.incidentId);
    })();
  }

  pagesOf(incidentId: string): Page[] {
    return (this.stmts.pagesOf.all(incidentId) as PageRow[]).map((r) => ({
      incidentId: r.incident_id,
      seq: r.seq,
      atMs: r.at,
      author: r.author,
      authorKeyId: r.author_key_id,
      kind: r.kind,
      content: r.content,
      contentSha256: r.content_sha256,
      prevHash: r.prev_hash,
      pageHash: r.page_hash,
      authorSignature: r.author_signature,
      seal: r.seal,
    }));
  }

  putEnrollmentToken(t: StoredEnrollmentToken): void {
    this.stmts.insertToken.run({ ...t, tags: JSON.stringify(t.tags), revokedAtMs: t.revokedAtMs ?? null });
  }

  listEnrollmentTokens(limit: number): StoredEnrollmentToken[] {
    return (this.stmts.listTokens.all(limit) as TokenRow[]).map(toToken);
  }

  getEnrollmentToken(id: string): StoredEnrollmentToken | undefined {
    const row = this.stmts.getToken.get(id) as TokenRow | undefined;
    return row && toToken(row);
  }

  revokeEnrollmentToken(id: string, atMs: number): boolean {
    return this.stmts.revokeToken.run(atMs, id).changes === 1;
  }

  enrollAgent(
    enrollment: StoredEnrollment,
    admit: (token: StoredEnrollmentToken | undefined, earlier: StoredEnrollment | undefined) => boolean,
  ): StoredEnrollmentToken {
    return this.db.transaction(() => {
      const token = this.getEnrollmentToken(enrollment.tokenId);
      const earlier = this.stmts.getEnrollment.get(enrollment.agentId) as EnrollmentRow | undefined;
      const counts = admit(
        token,
        earlier && {
          agentId: earlier.agent_id,
          publicKey: earlier.public_key,
          tokenId: earlier.token_id,
          hostname: earlier.hostname,
          enrolledAtMs: earlier.enrolled_at,
        },
      );
      if (counts) this.stmts.useToken.run(enrollment.tokenId);
      this.stmts.putEnrollment.run(enrollment);
      return { ...token!, used: token!.used + (counts ? 1 : 0) };
    })();
  }

  close(): void {
    this.db.close();
  }
}
