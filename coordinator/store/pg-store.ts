import type pg from "pg";
import type { AuditFieldsOfEntry, AuditHead, ChainedAudit } from "../../common/audit-chain.js";
import type { Page } from "../../common/journal.js";
import type { AuditEntry } from "../../proto/api.js";
import { applyPgBatch, lockAppends } from "./pg-batch.js";
import { PgCluster } from "./pg-cluster.js";
import { idsByPrefix, inTransaction, openPool, type PostgresOptions, withClient } from "./pg-connect.js";
import { PgExportLog } from "./pg-exports.js";
import { PgSchedules } from "./pg-schedules.js";
import { migratePg } from "./pg-schema.js";
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

// The store several coordinators share: PostgreSQL. Rows come back shaped as
// SQLite's (pg-connect.ts), so records are mapped by sqlite-rows.ts. What must
// happen once however many coordinators ask (an enrolment's token use, a
// notebook page, a schedule's run) is one transaction holding the row it
// decides on (SELECT … FOR UPDATE).

/** A chain's sealed head. */
const AUDIT_HEAD = "SELECT chain, n, hash, seal FROM audit_heads WHERE chain = $1";

export class PgStore implements Store {
  readonly schedules: PgSchedules;
  readonly exportLog: PgExportLog;
  /** Leases and action owners: what lets several coordinators share this store. */
  readonly cluster: PgCluster;

  private constructor(
    private readonly pool: pg.Pool,
    /** The coordinator writing: it owns (dispatches) the actions it releases. */
    private readonly coordinatorId: string,
  ) {
    this.schedules = new PgSchedules(pool);
    this.exportLog = new PgExportLog(pool);
    this.cluster = new PgCluster(pool);
  }

  /** Connects, brings the schema up to date (under the migration lock) and returns the store. */
  static async open(
    options: PostgresOptions,
    onError: (err: Error) => void,
    coordinatorId = "",
  ): Promise<PgStore> {
    const pool = openPool(options);
    // An idle connection the server closes (a restart, a fail-over: 57P01) is reported, not a crash.
    pool.on("error", onError);
    try {
      await withClient(pool, (client) => migratePg(client));
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PgStore(pool, coordinatorId);
  }

  private async rows<R>(sql: string, values: unknown[] = []): Promise<R[]> {
    return (await this.pool.query(sql, values)).rows as R[];
  }

  private async one<R>(sql: string, values: unknown[]): Promise<R | undefined> {
    return (await this.rows<R>(sql, values))[0];
  }

  async apply(batch: WriteBatch): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await withClient(this.pool, (client) => applyPgBatch(client, batch, this.coordinatorId));
        return;
      } catch (err) {
        // PostgreSQL chose this transaction to undo (a deadlock with another coordinator's, or a
        // serialisation failure): nothing of it was written, so it is written again.
        const code = (err as { code?: string }).code;
        if (attempt >= 5 || (code !== "40P01" && code !== "40001")) throw err;
      }
    }
  }

  async revokeAgent(agentId: string, atMs: number, by: string, reason: string): Promise<boolean> {
    return inTransaction(this.pool, async (c) => {
      const added = await c.query(
        `INSERT INTO revoked_agents (agent_id, revoked_at, revoked_by, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (agent_id) DO NOTHING`,
        [agentId, atMs, by, reason],
      );
      await c.query("DELETE FROM agents WHERE id = $1", [agentId]);
      return (added.rowCount ?? 0) > 0;
    });
  }

  async revokedAgents(): Promise<string[]> {
    return (await this.rows<{ agent_id: string }>("SELECT agent_id FROM revoked_agents")).map(
      (r) => r.agent_id,
    );
  }

  async enrolledKey(agentId: string): Promise<string | undefined> {
    return (await this.one<EnrollmentRow>("SELECT * FROM enrollments WHERE agent_id = $1", [agentId]))
      ?.public_key;
  }

  async auditHead(chain: string): Promise<AuditHead | undefined> {
    return this.one<AuditHead>(AUDIT_HEAD, [chain]);
  }

  async auditChains(): Promise<string[]> {
    const rows = await this.rows<{ chain: string }>(
      "SELECT chain FROM audit_heads UNION SELECT DISTINCT chain FROM audit WHERE n > 0 ORDER BY chain",
    );
    return rows.map((r) => r.chain);
  }

  async auditChain(chain: string): Promise<{ head: AuditHead | undefined; entries: ChainedAudit[] }> {
    return inTransaction(this.pool, async (c) => {
      await c.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
      const head = await c.query<AuditHead>(AUDIT_HEAD, [chain]);
      const rows = await c.query<AuditRow>("SELECT * FROM audit WHERE chain = $1 AND n > 0 ORDER BY n, seq", [
        chain,
      ]);
      return { head: head.rows[0], entries: rows.rows.map(toChainedAudit) };
    });
  }

  async unchainedAudit(): Promise<Array<{ seq: number } & AuditFieldsOfEntry>> {
    // A PostgreSQL store was chained from its first entry; kept for the contract.
    const rows = await this.rows<AuditRow>("SELECT * FROM audit WHERE n = 0 ORDER BY seq");
    return rows.map((r) => ({ seq: r.seq, ...toChainedAudit(r) }));
  }

  async chainOldAudit(entries: Array<{ seq: number; entry: ChainedAudit; head: AuditHead }>): Promise<void> {
    await inTransaction(this.pool, async (c) => {
      for (const { seq, entry, head } of entries) {
        await c.query(
          "UPDATE audit SET chain = $1, n = $2, prev_hash = $3, entry_hash = $4, seal = $5 WHERE seq = $6 AND n = 0",
          [entry.chain, entry.n, entry.prevHash, entry.entryHash, entry.seal, seq],
        );
        await c.query(
          `INSERT INTO audit_heads (chain, n, hash, seal) VALUES ($1, $2, $3, $4)
           ON CONFLICT (chain) DO UPDATE SET n = excluded.n, hash = excluded.hash, seal = excluded.seal
           WHERE excluded.n > audit_heads.n`,
          [head.chain, head.n, head.hash, head.seal],
        );
      }
    });
  }

  async loadAgents(): Promise<StoredAgent[]> {
    return (await this.rows<AgentRow>("SELECT * FROM agents")).map(toAgent);
  }

  async getAction(id: string): Promise<StoredAction | undefined> {
    const row = await this.one<ActionRow>("SELECT * FROM actions WHERE id = $1", [id]);
    return row && toAction(row);
  }

  actionIdsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return idsByPrefix(this.pool, "actions", prefix, limit);
  }

  async listActions(limit: number, pendingOnly = false): Promise<StoredAction[]> {
    const where = pendingOnly ? "WHERE state = 1 AND completed_at IS NULL" : "";
    const rows = await this.rows<ActionRow>(
      `SELECT * FROM actions ${where} ORDER BY submitted_at DESC, id COLLATE "C" DESC LIMIT $1`,
      [limit],
    );
    return rows.map(toAction);
  }

  async openActions(): Promise<StoredAction[]> {
    return (await this.rows<ActionRow>("SELECT * FROM actions WHERE completed_at IS NULL AND state = 2")).map(
      toAction,
    );
  }

  async pendingActions(): Promise<StoredAction[]> {
    return (await this.rows<ActionRow>("SELECT * FROM actions WHERE state = 1 AND completed_at IS NULL")).map(
      toAction,
    );
  }

  async listAudit(limit: number, actionId?: string): Promise<AuditEntry[]> {
    const rows = actionId
      ? await this.rows<AuditRow>("SELECT * FROM audit WHERE action_id = $1 ORDER BY seq DESC LIMIT $2", [
          actionId,
          limit,
        ])
      : await this.rows<AuditRow>("SELECT * FROM audit ORDER BY seq DESC LIMIT $1", [limit]);
    return rows.map(toAuditEntry);
  }

  async commandsOf(actionId: string): Promise<StoredCommand[]> {
    return (await this.rows<CommandRow>("SELECT * FROM commands WHERE action_id = $1", [actionId])).map(
      toCommand,
    );
  }

  async getCommand(id: string): Promise<StoredCommand | undefined> {
    const row = await this.one<CommandRow>("SELECT * FROM commands WHERE id = $1", [id]);
    return row && toCommand(row);
  }

  async resultsOf(actionId: string): Promise<StoredResult[]> {
    const rows = await this.rows<ResultRow>("SELECT * FROM results WHERE action_id = $1 ORDER BY seq", [
      actionId,
    ]);
    return rows.map(toResult);
  }

  async hasResult(commandId: string): Promise<boolean> {
    return (await this.one("SELECT 1 FROM results WHERE command_id = $1", [commandId])) !== undefined;
  }

  async matchedAgents(actionId: string): Promise<string[]> {
    const rows = await this.rows<{ agent_id: string }>(
      "SELECT agent_id FROM results WHERE action_id = $1 AND found",
      [actionId],
    );
    return rows.map((r) => r.agent_id);
  }

  async alertsAfter(afterSeq: number, limit: number): Promise<StoredAlert[]> {
    const rows = await this.rows<AlertRow>("SELECT * FROM alerts WHERE seq > $1 ORDER BY seq LIMIT $2", [
      afterSeq,
      limit,
    ]);
    return rows.map(toAlert);
  }

  async alertsBefore(beforeSeq: number, sinceMs: number, limit: number): Promise<StoredAlert[]> {
    const rows = await this.rows<AlertRow>(
      "SELECT * FROM alerts WHERE seq < $1 AND received_at >= $2 ORDER BY seq DESC LIMIT $3",
      [beforeSeq, sinceMs, limit],
    );
    return rows.map(toAlert);
  }

  async listEvidence(incidentId: string, limit: number): Promise<StoredEvidence[]> {
    const rows = incidentId
      ? await this.rows<EvidenceRow>(
          `SELECT * FROM evidence WHERE incident_id = $1 ORDER BY received_at DESC, id COLLATE "C" DESC LIMIT $2`,
          [incidentId, limit],
        )
      : await this.rows<EvidenceRow>(
          `SELECT * FROM evidence ORDER BY received_at DESC, id COLLATE "C" DESC LIMIT $1`,
          [limit],
        );
    return rows.map(toEvidence);
  }

  async getEvidence(id: string): Promise<StoredEvidence | undefined> {
    const row = await this.one<EvidenceRow>("SELECT * FROM evidence WHERE id = $1", [id]);
    return row && toEvidence(row);
  }

  evidenceIdsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return idsByPrefix(this.pool, "evidence", prefix, limit);
  }

  async putEnrollmentToken(t: StoredEnrollmentToken): Promise<void> {
    await this.pool.query(
      `INSERT INTO enrollment_tokens (id, secret_sha256, tags, uses, used, expires_at, created_at, created_by, revoked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        t.id,
        t.secretSha256,
        JSON.stringify(t.tags),
        t.uses,
        t.used,
        t.expiresAtMs,
        t.createdAtMs,
        t.createdBy,
        t.revokedAtMs ?? null,
      ],
    );
  }

  async listEnrollmentTokens(limit: number): Promise<StoredEnrollmentToken[]> {
    const rows = await this.rows<TokenRow>(
      `SELECT * FROM enrollment_tokens ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $1`,
      [limit],
    );
    return rows.map(toToken);
  }

  async getEnrollmentToken(id: string): Promise<StoredEnrollmentToken | undefined> {
    const row = await this.one<TokenRow>("SELECT * FROM enrollment_tokens WHERE id = $1", [id]);
    return row && toToken(row);
  }

  async revokeEnrollmentToken(id: string, atMs: number): Promise<boolean> {
    const r = await this.pool.query(
      "UPDATE enrollment_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
      [atMs, id],
    );
    return r.rowCount === 1;
  }

  async enrollAgent(
    enrollment: StoredEnrollment,
    admit: (token: StoredEnrollmentToken | undefined, earlier: StoredEnrollment | undefined) => boolean,
  ): Promise<StoredEnrollmentToken> {
    return inTransaction(this.pool, async (c) => {
      // The token's row is held: two coordinators enrolling with a one-use token count one use each, in turn.
      const tokenRow = (
        await c.query<TokenRow>("SELECT * FROM enrollment_tokens WHERE id = $1 FOR UPDATE", [
          enrollment.tokenId,
        ])
      ).rows[0];
      const token = tokenRow && toToken(tokenRow);
      const earlier = (
        await c.query<EnrollmentRow>("SELECT * FROM enrollments WHERE agent_id = $1 FOR UPDATE", [
          enrollment.agentId,
        ])
      ).rows[0];
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
      if (counts)
        await c.query("UPDATE enrollment_tokens SET used = used + 1 WHERE id = $1", [enrollment.tokenId]);
      await c.query(
        `INSERT INTO enrollments (agent_id, public_key, token_id, hostname, enrolled_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (agent_id) DO UPDATE SET public_key = excluded.public_key, token_id = excluded.token_id,
           hostname = excluded.hostname, enrolled_at = excluded.enrolled_at`,
        [
          enrollment.agentId,
          enrollment.publicKey,
          enrollment.tokenId,
          enrollment.hostname,
          enrollment.enrolledAtMs,
        ],
      );
      return { ...token!, used: token!.used + (counts ? 1 : 0) };
    });
  }

  async putIncident(i: StoredIncident): Promise<void> {
    await this.pool.query(
      `INSERT INTO incidents (id, title, severity, phase, opened_at, opened_by, head_pages, head_hash, head_seal)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [i.id, i.title, i.severity, i.phase, i.openedAtMs, i.openedBy, i.headPages, i.headHash, i.headSeal],
    );
  }

  async getIncident(id: string): Promise<StoredIncident | undefined> {
    const row = await this.one<IncidentRow>("SELECT * FROM incidents WHERE id = $1", [id]);
    return row && toIncident(row);
  }

  incidentIdsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return idsByPrefix(this.pool, "incidents", prefix, limit);
  }

  async listIncidents(limit: number): Promise<StoredIncident[]> {
    const rows = await this.rows<IncidentRow>(
      `SELECT * FROM incidents ORDER BY opened_at DESC, id COLLATE "C" DESC LIMIT $1`,
      [limit],
    );
    return rows.map(toIncident);
  }

  async appendPage(incidentId: string, write: (incident: StoredIncident) => PageAppend): Promise<Page> {
    return inTransaction(this.pool, async (c) => {
      // The incident's row is held until commit: writers on every coordinator append one after another,
      // each from the head the one before left (one page number, one previous hash).
      const row = (
        await c.query<IncidentRow>("SELECT * FROM incidents WHERE id = $1 FOR UPDATE", [incidentId])
      ).rows[0];
      if (!row) throw new Error(`no incident ${incidentId}`);
      const { page, head, phase } = write(toIncident(row));
      await lockAppends(c);
      await c.query(
        `INSERT INTO journal (incident_id, seq, at, author, author_key_id, kind, content, content_sha256,
                              prev_hash, page_hash, author_signature, seal)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [
          page.incidentId,
          page.seq,
          page.atMs,
          page.author,
          page.authorKeyId,
          page.kind,
          page.content,
          page.contentSha256,
          page.prevHash,
          page.pageHash,
          page.authorSignature,
          page.seal,
        ],
      );
      await c.query(
        "UPDATE incidents SET head_pages = $1, head_hash = $2, head_seal = $3, phase = COALESCE($4, phase) WHERE id = $5",
        [head.headPages, head.headHash, head.headSeal, phase ?? null, incidentId],
      );
      return page;
    });
  }

  async pagesOf(incidentId: string): Promise<Page[]> {
    return (
      await this.rows<PageRow>("SELECT * FROM journal WHERE incident_id = $1 ORDER BY row", [incidentId])
    ).map(toPage);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
