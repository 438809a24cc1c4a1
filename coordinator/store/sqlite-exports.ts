import type Database from "better-sqlite3";
import { Alert, CommandResult, CommandStatus, EvidenceItem } from "../../proto/api.js";
import type { ExportKind, ExportRecord, ExportSource } from "../exports/source.js";

// What export sinks read from the SQLite store: each kind's rows in the order
// they were stored (rowid or seq, which only grow), turned into records with a
// stable id, and the sinks' cursors. Read in bounded pages by the exporter.

type Row = Record<string, unknown> & { seq: number };

/** A batch read stops past this many bytes of stored records (at least one is read). */
const MAX_BATCH_BYTES = 4 * 1024 * 1024;

const QUERIES: Record<ExportKind, string> = {
  results: `SELECT r.rowid AS seq, r.command_id, r.action_id, r.agent_id, r.found, r.payload, r.received_at,
              a.hostname, x.name AS action_name, x.incident_id
            FROM results r LEFT JOIN agents a ON a.id = r.agent_id LEFT JOIN actions x ON x.id = r.action_id
            WHERE r.rowid > ? ORDER BY r.rowid LIMIT ?`,
  alerts: `SELECT l.seq, l.id, l.agent_id, l.received_at, l.payload FROM alerts l WHERE l.seq > ? ORDER BY l.seq LIMIT ?`,
  audit: "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
  notebook: "SELECT row AS seq, * FROM journal WHERE row > ? ORDER BY row LIMIT ?",
  evidence: "SELECT rowid AS seq, * FROM evidence WHERE rowid > ? ORDER BY rowid LIMIT ?",
};

const LATEST: Record<ExportKind, string> = {
  results: "SELECT COALESCE(MAX(rowid), 0) AS n FROM results",
  alerts: "SELECT COALESCE(MAX(seq), 0) AS n FROM alerts",
  audit: "SELECT COALESCE(MAX(seq), 0) AS n FROM audit",
  notebook: "SELECT COALESCE(MAX(row), 0) AS n FROM journal",
  evidence: "SELECT COALESCE(MAX(rowid), 0) AS n FROM evidence",
};

const str = (v: unknown) => (typeof v === "string" ? v : "");
const num = (v: unknown) => (typeof v === "number" ? v : 0);

function resultRecord(r: Row): ExportRecord {
  const result = CommandResult.decode(r.payload as Buffer);
  const host = str(r.hostname) || str(r.agent_id);
  const status = CommandStatus[result.status]?.replace("COMMAND_STATUS_", "").toLowerCase() ?? "unknown";
  return {
    kind: "results",
    id: `result:${str(r.command_id)}`,
    atMs: num(r.received_at),
    agentId: str(r.agent_id),
    hostname: str(r.hostname),
    actionId: str(r.action_id),
    incidentId: str(r.incident_id) || undefined,
    message: `${str(r.action_name) || "action"} on ${host}: ${status}, ${result.found ? "found" : "nothing found"}`,
    data: CommandResult.toJSON(result) as Record<string, unknown>,
  };
}

function alertRecord(r: Row): ExportRecord {
  const alert = Alert.decode(r.payload as Buffer);
  const host = alert.hostname || alert.agentId;
  const count = alert.rows.length || alert.changes.length + alert.changesOmitted;
  const what = alert.scheduleId
    ? `schedule ${alert.watch} run ${alert.run}`
    : `${alert.source} watch ${alert.watch}`;
  return {
    kind: "alerts",
    id: `alert:${alert.agentId}:${alert.id}`,
    atMs: alert.atMs,
    agentId: alert.agentId,
    hostname: alert.hostname,
    actionId: alert.actionId || undefined,
    message: `${what} on ${host}: ${count} change${count === 1 ? "" : "s"}`,
    data: Alert.toJSON(alert) as Record<string, unknown>,
  };
}

function auditRecord(r: Row): ExportRecord {
  const chain = str(r.chain);
  return {
    kind: "audit",
    // The chain and position name an entry for good (an entry from before chains: its seq).
    id: chain && num(r.n) ? `audit:${chain}:${num(r.n)}` : `audit:seq:${r.seq}`,
    atMs: num(r.at),
    agentId: str(r.agent_id) || undefined,
    actionId: str(r.action_id) || undefined,
    message: `${str(r.actor)}: ${str(r.event)}${r.message ? ` — ${str(r.message)}` : ""}`,
    data: {
      actor: r.actor,
      event: r.event,
      actionId: r.action_id,
      agentId: r.agent_id,
      code: r.code,
      message: r.message,
      chain,
      n: r.n,
      entryHash: r.entry_hash,
      prevHash: r.prev_hash,
    },
  };
}

function pageRecord(r: Row): ExportRecord {
  let content: unknown = r.content;
  try {
    content = JSON.parse(str(r.content));
  } catch {
    // kept as text
  }
  return {
    kind: "notebook",
    id: `notebook:${str(r.incident_id)}:${num(r.seq)}`,
    atMs: num(r.at),
    incidentId: str(r.incident_id),
    message: `incident ${str(r.incident_id)} page ${num(r.seq)}: ${str(r.kind)} by ${str(r.author)}`,
    data: {
      incidentId: r.incident_id,
      page: r.seq,
      author: r.author,
      authorKeyId: r.author_key_id,
      kind: r.kind,
      content,
      contentSha256: r.content_sha256,
      prevHash: r.prev_hash,
      pageHash: r.page_hash,
    },
  };
}

function evidenceRecord(r: Row): ExportRecord {
  const item = EvidenceItem.decode(r.payload as Buffer);
  return {
    kind: "evidence",
    id: `evidence:${str(r.id)}`,
    atMs: num(r.received_at),
    agentId: str(r.agent_id),
    incidentId: str(r.incident_id) || undefined,
    message: `evidence ${str(r.id)} from ${str(r.agent_id)}`,
    data: EvidenceItem.toJSON(item) as Record<string, unknown>,
  };
}

const TO_RECORD: Record<ExportKind, (r: Row) => ExportRecord> = {
  results: resultRecord,
  alerts: alertRecord,
  audit: auditRecord,
  notebook: pageRecord,
  evidence: evidenceRecord,
};

export class SqliteExportLog implements ExportSource {
  private readonly reads;
  private readonly latests;
  private readonly getCursor;
  private readonly putCursor;

  constructor(db: Database.Database) {
    const each = (sql: Record<ExportKind, string>) =>
      Object.fromEntries(Object.entries(sql).map(([k, q]) => [k, db.prepare(q)])) as Record<
        ExportKind,
        Database.Statement
      >;
    this.reads = each(QUERIES);
    this.latests = each(LATEST);
    this.getCursor = db.prepare("SELECT seq FROM export_cursors WHERE sink = ? AND kind = ?");
    this.putCursor = db.prepare(`
      INSERT INTO export_cursors (sink, kind, seq) VALUES (?, ?, ?)
      ON CONFLICT (sink, kind) DO UPDATE SET seq = MAX(seq, excluded.seq)`);
  }

  async read(
    kind: ExportKind,
    afterSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; record: ExportRecord }>> {
    // Bounded in bytes too: results run up to 1 MiB each, and a batch must stay a size receivers
    // take (Elasticsearch refuses bodies over 100 MB) and quick to turn into JSON.
    const out: Array<{ seq: number; record: ExportRecord }> = [];
    let bytes = 0;
    for (const r of this.reads[kind].iterate(afterSeq, limit) as IterableIterator<Row>) {
      out.push({ seq: r.seq, record: TO_RECORD[kind](r) });
      bytes += (r.payload as Buffer | undefined)?.length ?? String(r.content ?? r.message ?? "").length;
      if (bytes >= MAX_BATCH_BYTES) break;
    }
    return out;
  }

  async latest(kind: ExportKind): Promise<number> {
    return (this.latests[kind].get() as { n: number }).n;
  }

  async cursor(sink: string, kind: ExportKind): Promise<number> {
    return (this.getCursor.get(sink, kind) as { seq: number } | undefined)?.seq ?? 0;
  }

  async saveCursor(sink: string, kind: ExportKind, seq: number): Promise<void> {
    this.putCursor.run(sink, kind, seq);
  }
}
