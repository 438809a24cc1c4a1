import type Database from "better-sqlite3";
import type { ExportKind, ExportRecord, ExportSource } from "../exports/source.js";
import { type ExportRow, MAX_BATCH_BYTES, TO_RECORD } from "./export-records.js";

// What export sinks read from the SQLite store: each kind's rows in the order
// they were stored (rowid or seq, which only grow), turned into records with a
// stable id, and the sinks' cursors. Read in bounded pages by the exporter.

const QUERIES: Record<ExportKind, string> = {
  results: `SELECT r.rowid AS seq, r.command_id, r.action_id, r.agent_id, r.found, r.payload, r.received_at,
              a.hostname, x.name AS action_name, x.incident_id
            FROM results r LEFT JOIN agents a ON a.id = r.agent_id LEFT JOIN actions x ON x.id = r.action_id
            WHERE r.rowid > ? ORDER BY r.rowid LIMIT ?`,
  alerts: `SELECT l.seq, l.id, l.agent_id, l.received_at, l.payload FROM alerts l WHERE l.seq > ? ORDER BY l.seq LIMIT ?`,
  audit: "SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
  // Named, not `*`: the journal's own `seq` is the page number, and would overwrite the cursor.
  notebook: `SELECT row AS seq, seq AS page, incident_id, at, author, author_key_id, kind, content, content_sha256, prev_hash, page_hash
             FROM journal WHERE row > ? ORDER BY row LIMIT ?`,
  evidence: "SELECT rowid AS seq, * FROM evidence WHERE rowid > ? ORDER BY rowid LIMIT ?",
};

const LATEST: Record<ExportKind, string> = {
  results: "SELECT COALESCE(MAX(rowid), 0) AS n FROM results",
  alerts: "SELECT COALESCE(MAX(seq), 0) AS n FROM alerts",
  audit: "SELECT COALESCE(MAX(seq), 0) AS n FROM audit",
  notebook: "SELECT COALESCE(MAX(row), 0) AS n FROM journal",
  evidence: "SELECT COALESCE(MAX(rowid), 0) AS n FROM evidence",
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
    for (const r of this.reads[kind].iterate(afterSeq, limit) as IterableIterator<ExportRow>) {
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
