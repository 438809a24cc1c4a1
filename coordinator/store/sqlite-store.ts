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
// schema is sqlite-migrations.ts.

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

  apply(batch: WriteBatch): void {
    this.applyTx(batch);
  }

  revokeAgent(agentId: string, atMs: number, by: string, reason: string): boolean {
    return this.db.transaction(() => {
      const changed = this.stmts.revokeAgent.run(agentId, atMs, by, reason).changes > 0;
      this.stmts.deleteAgent.run(agentId);
      return changed;
    })();
  }

  revokedAgents(): string[] {
    return (this.stmts.revokedAgents.all() as Array<{ agent_id: string }>).map((r) => r.agent_id);
  }

  enrolledKey(agentId: string): string | undefined {
    return (this.stmts.getEnrollment.get(agentId) as EnrollmentRow | undefined)?.public_key;
  }

  auditHead(chain: string): AuditHead | undefined {
    return this.stmts.auditHead.get(chain) as AuditHead | undefined;
  }

  auditChains(): string[] {
    return (this.stmts.auditChains.all() as Array<{ chain: string }>).map((r) => r.chain);
  }

  *auditEntries(chain: string): Iterable<ChainedAudit> {
    for (const r of this.stmts.auditEntries.iterate(chain) as Iterable<AuditRow>) yield toChainedAudit(r);
  }

  unchainedAudit(): Array<{ seq: number } & AuditFieldsOfEntry> {
    return (this.stmts.unchainedAudit.all() as AuditRow[]).map((r) => ({ seq: r.seq, ...toChainedAudit(r) }));
  }

  chainOldAudit(entries: Array<{ seq: number; entry: ChainedAudit; head: AuditHead }>): void {
    this.db.transaction(() => {
      for (const { seq, entry, head } of entries) {
        this.stmts.chainOldAudit.run({ ...entry, seq });
        this.stmts.putAuditHead.run(head);
      }
    })();
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

  evidenceIdsByPrefix(prefix: string, limit: number): string[] {
    return (this.stmts.evidenceByPrefix.all(prefix, `${prefix}\uffff`, limit) as Array<{ id: string }>).map(
      (r) => r.id,
    );
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
    return (this.stmts.pagesOf.all(incidentId) as PageRow[]).map(toPage);
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
