import type Database from "better-sqlite3";

// Every statement the SQLite store runs, prepared once when it opens. Values
// are always bound, never pasted into SQL.

export function prepareStatements(db: Database.Database) {
  return {
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
                           state, weight, required_weight, schedule_id, run)
      VALUES (@id, @name, @target, @signed, @signerKeyIds, @signerNames, @modules, @incidentId, @createdAtMs,
              @validFromMs, @expiresAtMs, @submittedAtMs, @timeoutMs, @completedAtMs,
              @state, @weight, @requiredWeight, @scheduleId, @run)
      ON CONFLICT (id) DO UPDATE SET signed = excluded.signed, signer_key_ids = excluded.signer_key_ids,
        signer_names = excluded.signer_names, state = excluded.state, weight = excluded.weight,
        completed_at = COALESCE(actions.completed_at, excluded.completed_at)`),
    insertAudit: db.prepare(`
      INSERT INTO audit (at, actor, event, action_id, agent_id, code, message, chain, n, prev_hash, entry_hash, seal)
      VALUES (@atMs, @actor, @event, @actionId, @agentId, @code, @message, @chain, @n, @prevHash, @entryHash, @seal)`),
    chainOldAudit: db.prepare(`
      UPDATE audit SET chain = @chain, n = @n, prev_hash = @prevHash, entry_hash = @entryHash, seal = @seal
      WHERE seq = @seq AND n = 0`),
    putAuditHead: db.prepare(`
      INSERT INTO audit_heads (chain, n, hash, seal) VALUES (@chain, @n, @hash, @seal)
      ON CONFLICT (chain) DO UPDATE SET n = excluded.n, hash = excluded.hash, seal = excluded.seal
      WHERE excluded.n > audit_heads.n`),
    auditHead: db.prepare("SELECT * FROM audit_heads WHERE chain = ?"),
    auditChains: db.prepare(
      "SELECT chain FROM audit_heads UNION SELECT DISTINCT chain FROM audit WHERE n > 0 ORDER BY chain",
    ),
    auditEntries: db.prepare("SELECT * FROM audit WHERE chain = ? AND n > 0 ORDER BY n, seq"),
    unchainedAudit: db.prepare("SELECT * FROM audit WHERE n = 0 ORDER BY seq"),
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
    complete: db.prepare("UPDATE actions SET completed_at = ? WHERE id = ? AND completed_at IS NULL"),
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
    evidenceByPrefix: db.prepare("SELECT id FROM evidence WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"),
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
    revokeAgent: db.prepare(`
      INSERT INTO revoked_agents (agent_id, revoked_at, revoked_by, reason) VALUES (?, ?, ?, ?)
      ON CONFLICT (agent_id) DO NOTHING`),
    revokedAgents: db.prepare("SELECT agent_id FROM revoked_agents"),
    deleteAgent: db.prepare("DELETE FROM agents WHERE id = ?"),
    putEnrollment: db.prepare(`
      INSERT INTO enrollments (agent_id, public_key, token_id, hostname, enrolled_at)
      VALUES (@agentId, @publicKey, @tokenId, @hostname, @enrolledAtMs)
      ON CONFLICT (agent_id) DO UPDATE SET public_key = excluded.public_key, token_id = excluded.token_id,
        hostname = excluded.hostname, enrolled_at = excluded.enrolled_at`),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
