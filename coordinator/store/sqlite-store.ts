import { chmodSync, closeSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import type { AuditFieldsOfEntry, AuditHead, ChainedAudit } from "../../common/audit-chain.js";
import type { Page } from "../../common/journal.js";
import type { AuditEntry } from "../../proto/api.js";
import { SqliteExportLog } from "./sqlite-exports.js";
import { migrate } from "./sqlite-migrations.js";
import {
  type ActionRow,
  type AgentRow,
  type AlertRow,
  type AuditRow,
  type CommandRow,
  type EnrollmentRow,
  type EvidenceRow,
  type IncidentRow,
  type PageRow,
  type ResultRow,
  type TokenRow,
  toAction,
  toAgent,
  toAlert,
  toAuditEntry,
  toChainedAudit,
  toCommand,
  toEvidence,
  toIncident,
  toPage,
  toResult,
  toToken,
} from "./sqlite-rows.js";
import { SqliteSchedules } from "./sqlite-schedules.js";
import { prepareStatements, type Statements } from "./sqlite-statements.js";
import type {
  PageAppend,
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
// batches (one transaction each); reads are prepared statements
// (sqlite-statements.ts) whose rows map to records in sqlite-rows.ts; the
// schema is sqlite-migrations.ts. better-sqlite3 answers synchronously: each
// method does its work at once and returns a settled promise (the interface
// is asynchronous for PostgreSQL), so SQLite costs no extra round trips.

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly stmts: Statements;
  private readonly applyTx: (batch: WriteBatch) => void;
  readonly schedules: SqliteSchedules;
  readonly exportLog: SqliteExportLog;

  constructor(path: string) {
    // Only the coordinator's user reads it (actions, results, audit): made 0600 before SQLite opens it,
    // so that its -wal and -shm files, which SQLite makes with the same mode, are 0600 too.
    closeSync(openSync(path, "a", 0o600));
    chmodSync(path, 0o600);
    this.db = new Database(path);
    this.db.pragma("journal_mode = WAL");
    // WAL with synchronous=NORMAL survives a process crash; only a power loss
    // can lose the last transactions, and results are redelivered by then.
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.db.pragma("busy_timeout = 5000");
    migrate(this.db, path);
    const db = this.db;
    this.stmts = prepareStatements(db);
    this.schedules = new SqliteSchedules(db);
    this.exportLog = new SqliteExportLog(db);

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
          scheduleId: a.scheduleId ?? "",
          run: a.run ?? 0,
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
      for (const { entry, head } of batch.audit) {
        this.stmts.insertAudit.run(entry);
        this.stmts.putAuditHead.run(head);
      }
      for (const e of batch.evidence) {
        this.stmts.insertEvidence.run(e.id, e.agentId, e.incidentId, e.receivedAtMs, Buffer.from(e.payload));
      }
      for (const a of batch.alerts) {
        this.stmts.insertAlert.run(a.id, a.agentId, a.atMs, a.receivedAtMs, Buffer.from(a.payload));
      }
    });
  }

  async apply(batch: WriteBatch): Promise<void> {
    this.applyTx(batch);
  }

  async revokeAgent(agentId: string, atMs: number, by: string, reason: string): Promise<boolean> {
    return this.db.transaction(() => {
      const changed = this.stmts.revokeAgent.run(agentId, atMs, by, reason).changes > 0;
      this.stmts.deleteAgent.run(agentId);
      return changed;
    })();
  }

  async revokedAgents(): Promise<string[]> {
    return (this.stmts.revokedAgents.all() as Array<{ agent_id: string }>).map((r) => r.agent_id);
  }

  async enrolledKey(agentId: string): Promise<string | undefined> {
    return (this.stmts.getEnrollment.get(agentId) as EnrollmentRow | undefined)?.public_key;
  }

  async auditHead(chain: string): Promise<AuditHead | undefined> {
    return this.stmts.auditHead.get(chain) as AuditHead | undefined;
  }

  async auditChains(): Promise<string[]> {
    return (this.stmts.auditChains.all() as Array<{ chain: string }>).map((r) => r.chain);
  }

  async auditChain(chain: string): Promise<{ head: AuditHead | undefined; entries: ChainedAudit[] }> {
    // Both read at once, with nothing in between (one connection, synchronous statements).
    const head = this.stmts.auditHead.get(chain) as AuditHead | undefined;
    const entries = (this.stmts.auditEntries.all(chain) as AuditRow[]).map(toChainedAudit);
    return { head, entries };
  }

  async unchainedAudit(): Promise<Array<{ seq: number } & AuditFieldsOfEntry>> {
    return (this.stmts.unchainedAudit.all() as AuditRow[]).map((r) => ({ seq: r.seq, ...toChainedAudit(r) }));
  }

  async chainOldAudit(entries: Array<{ seq: number; entry: ChainedAudit; head: AuditHead }>): Promise<void> {
    this.db.transaction(() => {
      for (const { seq, entry, head } of entries) {
        this.stmts.chainOldAudit.run({ ...entry, seq });
        this.stmts.putAuditHead.run(head);
      }
    })();
  }

  async loadAgents(): Promise<StoredAgent[]> {
    return (this.stmts.loadAgents.all() as AgentRow[]).map(toAgent);
  }

  async getAction(id: string): Promise<StoredAction | undefined> {
    const row = this.stmts.getAction.get(id) as ActionRow | undefined;
    return row ? toAction(row) : undefined;
  }

  async actionIdsByPrefix(prefix: string, limit: number): Promise<string[]> {
    // A range scan on the primary key; the prefix is a bound value, never SQL.
    const upper = `${prefix}\uffff`;
    return (this.stmts.byPrefix.all(prefix, upper, limit) as Array<{ id: string }>).map((r) => r.id);
  }

  async listActions(limit: number, pendingOnly = false): Promise<StoredAction[]> {
    return ((pendingOnly ? this.stmts.listPending : this.stmts.listActions).all(limit) as ActionRow[]).map(
      toAction,
    );
  }

  async pendingActions(): Promise<StoredAction[]> {
    return (this.stmts.pendingActions.all() as ActionRow[]).map(toAction);
  }

  async listAudit(limit: number, actionId?: string): Promise<AuditEntry[]> {
    const rows = (
      actionId ? this.stmts.listAuditOf.all(actionId, limit) : this.stmts.listAudit.all(limit)
    ) as AuditRow[];
    return rows.map(toAuditEntry);
  }

  async openActions(): Promise<StoredAction[]> {
    return (this.stmts.openActions.all() as ActionRow[]).map(toAction);
  }

  async commandsOf(actionId: string): Promise<StoredCommand[]> {
    return (this.stmts.commandsOf.all(actionId) as CommandRow[]).map(toCommand);
  }

  async getCommand(id: string): Promise<StoredCommand | undefined> {
    const row = this.stmts.getCommand.get(id) as CommandRow | undefined;
    return row ? toCommand(row) : undefined;
  }

  async resultsOf(actionId: string): Promise<StoredResult[]> {
    return (this.stmts.resultsOf.all(actionId) as ResultRow[]).map(toResult);
  }

  async hasResult(commandId: string): Promise<boolean> {
    return this.stmts.hasResult.get(commandId) !== undefined;
  }

  async matchedAgents(actionId: string): Promise<string[]> {
    return (this.stmts.matched.all(actionId) as Array<{ agent_id: string }>).map((r) => r.agent_id);
  }

  async alertsAfter(afterSeq: number, limit: number): Promise<StoredAlert[]> {
    return (this.stmts.alertsAfter.all(afterSeq, limit) as AlertRow[]).map(toAlert);
  }

  async alertsBefore(beforeSeq: number, sinceMs: number, limit: number): Promise<StoredAlert[]> {
    return (this.stmts.alertsBefore.all(beforeSeq, sinceMs, limit) as AlertRow[]).map(toAlert);
  }

  async listEvidence(incidentId: string, limit: number): Promise<StoredEvidence[]> {
    const rows = (
      incidentId ? this.stmts.listEvidenceOf.all(incidentId, limit) : this.stmts.listEvidence.all(limit)
    ) as EvidenceRow[];
    return rows.map(toEvidence);
  }

  async evidenceIdsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return (this.stmts.evidenceByPrefix.all(prefix, `${prefix}\uffff`, limit) as Array<{ id: string }>).map(
      (r) => r.id,
    );
  }

  async getEvidence(id: string): Promise<StoredEvidence | undefined> {
    const row = this.stmts.getEvidence.get(id) as EvidenceRow | undefined;
    return row && toEvidence(row);
  }

  async putIncident(incident: StoredIncident): Promise<void> {
    this.stmts.putIncident.run(incident);
  }

  async getIncident(id: string): Promise<StoredIncident | undefined> {
    const r = this.stmts.getIncident.get(id) as IncidentRow | undefined;
    return r && toIncident(r);
  }

  async incidentIdsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return (this.stmts.incidentsByPrefix.all(prefix, `${prefix}\uffff`, limit) as Array<{ id: string }>).map(
      (r) => r.id,
    );
  }

  async listIncidents(limit: number): Promise<StoredIncident[]> {
    return (this.stmts.listIncidents.all(limit) as IncidentRow[]).map(toIncident);
  }

  async appendPage(incidentId: string, write: (incident: StoredIncident) => PageAppend): Promise<Page> {
    // One transaction from the read of the head to its move: nothing else writes in between.
    return this.db.transaction(() => {
      const row = this.stmts.getIncident.get(incidentId) as IncidentRow | undefined;
      if (!row) throw new Error(`no incident ${incidentId}`);
      const { page, head, phase } = write(toIncident(row));
      this.stmts.insertPage.run(page);
      this.stmts.moveHead.run(head.headPages, head.headHash, head.headSeal, phase ?? null, incidentId);
      return page;
    })();
  }

  async pagesOf(incidentId: string): Promise<Page[]> {
    return (this.stmts.pagesOf.all(incidentId) as PageRow[]).map(toPage);
  }

  async putEnrollmentToken(t: StoredEnrollmentToken): Promise<void> {
    this.stmts.insertToken.run({ ...t, tags: JSON.stringify(t.tags), revokedAtMs: t.revokedAtMs ?? null });
  }

  async listEnrollmentTokens(limit: number): Promise<StoredEnrollmentToken[]> {
    return (this.stmts.listTokens.all(limit) as TokenRow[]).map(toToken);
  }

  async getEnrollmentToken(id: string): Promise<StoredEnrollmentToken | undefined> {
    return this.tokenOf(id);
  }

  private tokenOf(id: string): StoredEnrollmentToken | undefined {
    const row = this.stmts.getToken.get(id) as TokenRow | undefined;
    return row && toToken(row);
  }

  async revokeEnrollmentToken(id: string, atMs: number): Promise<boolean> {
    return this.stmts.revokeToken.run(atMs, id).changes === 1;
  }

  async enrollAgent(
    enrollment: StoredEnrollment,
    admit: (token: StoredEnrollmentToken | undefined, earlier: StoredEnrollment | undefined) => boolean,
  ): Promise<StoredEnrollmentToken> {
    return this.db.transaction(() => {
      const token = this.tokenOf(enrollment.tokenId);
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

  async close(): Promise<void> {
    this.db.close();
  }
}
