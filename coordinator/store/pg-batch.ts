import type pg from "pg";
import { ActionState } from "../../proto/api.js";
import { FINAL_STATUSES } from "../command-status.js";
import type { StoredAction, WriteBatch } from "./store.js";

const RELEASED = ActionState.ACTION_STATE_RELEASED;
const FINAL = [...FINAL_STATUSES].join(", ");

// A WriteBatch applied to PostgreSQL in one transaction, each kind of row in
// one statement (arrays unnested server-side), so a batch of thousands of
// results costs a handful of round trips, not thousands. Results are inserted
// once per command id (ON CONFLICT DO NOTHING): whichever coordinator stores
// an answer first keeps it, a second copy is dropped. Rows another
// coordinator may write too (agents, commands) are taken in id order, so two
// batches never hold each other's rows crosswise.

const q = {
  agents: `
    INSERT INTO agents (id, hostname, os, os_release, arch, version, addresses, tags, isolated,
                        started_at, last_seen, first_seen, interval_ms)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::jsonb[], $8::jsonb[], $9::bool[], $10::bigint[], $11::bigint[], $12::bigint[], $13::int[])
    ORDER BY 1
    ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, os = excluded.os,
      os_release = excluded.os_release, arch = excluded.arch, version = excluded.version,
      addresses = excluded.addresses, tags = excluded.tags, isolated = excluded.isolated,
      started_at = excluded.started_at, last_seen = excluded.last_seen, interval_ms = excluded.interval_ms`,
  action: `
    INSERT INTO actions (id, name, target, signed, signer_key_ids, signer_names, modules, incident_id,
                         created_at, valid_from, expires_at, submitted_at, timeout_ms, completed_at,
                         state, weight, required_weight, schedule_id, run, owner)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
    ON CONFLICT (id) DO UPDATE SET signed = excluded.signed, signer_key_ids = excluded.signer_key_ids,
      signer_names = excluded.signer_names, state = excluded.state, weight = excluded.weight,
      completed_at = COALESCE(actions.completed_at, excluded.completed_at),
      -- Whoever releases an action (the last approval) dispatches it.
      owner = CASE WHEN excluded.state = ${RELEASED} AND actions.state <> ${RELEASED} THEN excluded.owner
                   ELSE actions.owner END`,
  commands: `
    INSERT INTO commands (id, action_id, agent_id, status, problem_code, problem_message, found,
                          created_at, sent_at, acked_at, updated_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], $6::text[],
                         $7::bool[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
    ORDER BY 1
    ON CONFLICT (id) DO UPDATE SET status = excluded.status, problem_code = excluded.problem_code,
      problem_message = excluded.problem_message, found = excluded.found, sent_at = excluded.sent_at,
      acked_at = excluded.acked_at, updated_at = excluded.updated_at
    -- Never back from a final state to an open one: a coordinator that was cut off may flush
    -- its "sent" after the one that took its action over stored the answer.
    WHERE NOT (commands.status IN (${FINAL}) AND excluded.status NOT IN (${FINAL}))`,
  results: `
    INSERT INTO results (command_id, action_id, agent_id, found, payload, received_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bytea[], $6::bigint[])
    ON CONFLICT (command_id) DO NOTHING`,
  complete: `
    UPDATE actions SET completed_at = c.at FROM unnest($1::text[], $2::bigint[]) AS c(id, at)
    WHERE actions.id = c.id AND actions.completed_at IS NULL`,
  alerts: `
    INSERT INTO alerts (id, agent_id, at, received_at, payload)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
    ON CONFLICT (agent_id, id) DO NOTHING`,
  evidence: `
    INSERT INTO evidence (id, agent_id, incident_id, received_at, payload)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[])
    ON CONFLICT (id) DO NOTHING`,
  audit: `
    INSERT INTO audit (at, actor, event, action_id, agent_id, code, message, chain, n, prev_hash, entry_hash, seal)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
  auditHead: `
    INSERT INTO audit_heads (chain, n, hash, seal) VALUES ($1, $2, $3, $4)
    ON CONFLICT (chain) DO UPDATE SET n = excluded.n, hash = excluded.hash, seal = excluded.seal
    WHERE excluded.n > audit_heads.n`,
};

/** pg_advisory_xact_lock key for appends to the tables read by sequence number. */
export const APPEND_LOCK = 0x64726167_01;

/**
 * Takes, until the transaction ends, the lock every transaction holds while it appends rows
 * that readers follow by sequence number (results, alerts, audit, evidence, notebook pages).
 * A sequence hands out numbers when rows are inserted, not when they commit: without it, a
 * reader could see 8 committed while 7 is still to come, move its cursor past 7 and never
 * export it. With it, numbers become visible in the order they were handed out.
 */
export async function lockAppends(client: pg.ClientBase): Promise<void> {
  await client.query("SELECT pg_advisory_xact_lock($1)", [APPEND_LOCK]);
}

const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Column arrays of rows: cols(rows, r => [a, b]) gives [[a…], [b…]]. */
function columns<T>(rows: readonly T[], pick: (row: T) => unknown[]): unknown[][] {
  const out: unknown[][] = [];
  for (const row of rows) {
    const values = pick(row);
    for (let i = 0; i < values.length; i++) {
      if (!out[i]) out[i] = [];
      out[i]!.push(values[i]);
    }
  }
  return out;
}

/** Writes one action row (inside the caller's transaction); `owner` dispatches it if this releases it. */
export async function writeAction(client: pg.ClientBase, a: StoredAction, owner: string): Promise<void> {
  await client.query(q.action, [
    a.id,
    a.name,
    a.target,
    buf(a.signed),
    JSON.stringify(a.signerKeyIds),
    JSON.stringify(a.signerNames),
    JSON.stringify(a.modules),
    a.incidentId,
    a.createdAtMs,
    a.validFromMs,
    a.expiresAtMs,
    a.submittedAtMs,
    a.timeoutMs,
    a.completedAtMs ?? null,
    a.state,
    a.weight,
    a.requiredWeight,
    a.scheduleId ?? "",
    a.run ?? 0,
    owner,
  ]);
}

/** Applies the batch in one transaction on `client` (a pool's client, held by the caller); `owner` dispatches the actions it releases. */
export async function applyPgBatch(client: pg.ClientBase, batch: WriteBatch, owner = ""): Promise<void> {
  await client.query("BEGIN");
  try {
    if (batch.agents.length) {
      await client.query(
        q.agents,
        columns(batch.agents, (a) => [
          a.id,
          a.hostname,
          a.os,
          a.osRelease,
          a.arch,
          a.version,
          JSON.stringify(a.addresses),
          JSON.stringify(a.tags),
          a.isolated,
          a.startedAtMs,
          a.lastSeenMs,
          a.firstSeenMs,
          a.intervalMs,
        ]),
      );
    }
    for (const a of [...batch.actions].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0))) {
      await writeAction(client, a, owner);
    }
    if (batch.commands.length) {
      await client.query(
        q.commands,
        columns(batch.commands, (c) => [
          c.id,
          c.actionId,
          c.agentId,
          c.status,
          c.problemCode,
          c.problemMessage,
          c.found,
          c.createdAtMs,
          c.sentAtMs,
          c.ackedAtMs,
          c.updatedAtMs,
        ]),
      );
    }
    if (batch.completed.length) {
      await client.query(
        q.complete,
        columns(batch.completed, (c) => [c.actionId, c.atMs]),
      );
    }
    if (batch.results.length || batch.audit.length || batch.alerts.length || batch.evidence.length) {
      // Last, and as late as it can be: the lock is held to the commit.
      await lockAppends(client);
    }
    if (batch.results.length) {
      await client.query(
        q.results,
        columns(batch.results, (r) => [
          r.commandId,
          r.actionId,
          r.agentId,
          r.found,
          buf(r.payload),
          r.receivedAtMs,
        ]),
      );
    }
    for (const { entry, head } of batch.audit) {
      await client.query(q.audit, [
        entry.atMs,
        entry.actor,
        entry.event,
        entry.actionId,
        entry.agentId,
        entry.code,
        entry.message,
        entry.chain,
        entry.n,
        entry.prevHash,
        entry.entryHash,
        entry.seal,
      ]);
      await client.query(q.auditHead, [head.chain, head.n, head.hash, head.seal]);
    }
    if (batch.alerts.length) {
      await client.query(
        q.alerts,
        columns(batch.alerts, (a) => [a.id, a.agentId, a.atMs, a.receivedAtMs, buf(a.payload)]),
      );
    }
    if (batch.evidence.length) {
      await client.query(
        q.evidence,
        columns(batch.evidence, (e) => [e.id, e.agentId, e.incidentId, e.receivedAtMs, buf(e.payload)]),
      );
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}
