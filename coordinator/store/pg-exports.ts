import type pg from "pg";
import type { ExportKind, ExportRecord, ExportSource } from "../exports/source.js";
import { type ExportRow, MAX_BATCH_BYTES, TO_RECORD } from "./export-records.js";

// What export sinks read from the PostgreSQL store: each kind's rows by their
// sequence number. Numbers become visible in the order they were handed out
// (appends hold one lock to their commit: pg-batch.ts lockAppends), so a
// cursor never moves past a row still to be committed.

const QUERIES: Record<ExportKind, string> = {
  results: `SELECT r.seq, r.command_id, r.action_id, r.agent_id, r.found, r.payload, r.received_at,
              a.hostname, x.name AS action_name, x.incident_id
            FROM results r LEFT JOIN agents a ON a.id = r.agent_id LEFT JOIN actions x ON x.id = r.action_id
            WHERE r.seq > $1 AND r.seq <= $2 ORDER BY r.seq`,
  alerts:
    "SELECT seq, id, agent_id, received_at, payload FROM alerts WHERE seq > $1 AND seq <= $2 ORDER BY seq",
  audit: "SELECT * FROM audit WHERE seq > $1 AND seq <= $2 ORDER BY seq",
  notebook: `SELECT row AS seq, seq AS page, incident_id, at, author, author_key_id, kind, content, content_sha256, prev_hash, page_hash
             FROM journal WHERE row > $1 AND row <= $2 ORDER BY row`,
  evidence: "SELECT * FROM evidence WHERE seq > $1 AND seq <= $2 ORDER BY seq",
};

/** Each stored record's size, read without its bytes (octet_length does not fetch a stored value). */
const SIZES: Record<ExportKind, string> = {
  results: "SELECT seq, octet_length(payload) AS size FROM results WHERE seq > $1 ORDER BY seq LIMIT $2",
  alerts: "SELECT seq, octet_length(payload) AS size FROM alerts WHERE seq > $1 ORDER BY seq LIMIT $2",
  audit: "SELECT seq, octet_length(message) AS size FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
  notebook:
    "SELECT row AS seq, octet_length(content) AS size FROM journal WHERE row > $1 ORDER BY row LIMIT $2",
  evidence: "SELECT seq, octet_length(payload) AS size FROM evidence WHERE seq > $1 ORDER BY seq LIMIT $2",
};

const LATEST: Record<ExportKind, string> = {
  results: "SELECT COALESCE(MAX(seq), 0) AS n FROM results",
  alerts: "SELECT COALESCE(MAX(seq), 0) AS n FROM alerts",
  audit: "SELECT COALESCE(MAX(seq), 0) AS n FROM audit",
  notebook: "SELECT COALESCE(MAX(row), 0) AS n FROM journal",
  evidence: "SELECT COALESCE(MAX(seq), 0) AS n FROM evidence",
};

export class PgExportLog implements ExportSource {
  constructor(private readonly pool: pg.Pool) {}

  async read(
    kind: ExportKind,
    afterSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; record: ExportRecord }>> {
    // Bounded in bytes too (results run up to 1 MiB each): sizes first, then only the rows that fit.
    const sizes = (await this.pool.query<{ seq: number; size: number }>(SIZES[kind], [afterSeq, limit])).rows;
    if (sizes.length === 0) return [];
    let last = sizes[0]!.seq;
    let bytes = 0;
    for (const { seq, size } of sizes) {
      last = seq;
      bytes += Number(size);
      if (bytes >= MAX_BATCH_BYTES) break;
    }
    const { rows } = await this.pool.query<ExportRow>(QUERIES[kind], [afterSeq, last]);
    return rows.map((r) => ({ seq: Number(r.seq), record: TO_RECORD[kind](r) }));
  }

  async latest(kind: ExportKind): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(LATEST[kind]);
    return Number(rows[0]?.n ?? 0);
  }

  async cursor(sink: string, kind: ExportKind): Promise<number> {
    const { rows } = await this.pool.query<{ seq: number }>(
      "SELECT seq FROM export_cursors WHERE sink = $1 AND kind = $2",
      [sink, kind],
    );
    return Number(rows[0]?.seq ?? 0);
  }

  async saveCursor(sink: string, kind: ExportKind, seq: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO export_cursors (sink, kind, seq) VALUES ($1, $2, $3)
       ON CONFLICT (sink, kind) DO UPDATE SET seq = GREATEST(export_cursors.seq, excluded.seq)`,
      [sink, kind, seq],
    );
  }
}
