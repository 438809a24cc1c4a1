// What the exporter reads: the store's records of each kind in the order they
// were stored, each with a sequence number that only grows (the cursor) and a
// stable id (a receiver drops repeats by it), and where each sink has got to.

/** What a sink can carry. */
export const EXPORT_KINDS = ["results", "alerts", "audit", "notebook", "evidence"] as const;
export type ExportKind = (typeof EXPORT_KINDS)[number];

/** One record, ready to be formatted: `data` is plain JSON. */
export interface ExportRecord {
  kind: ExportKind;
  /** Stable across retries and restarts: `<kind>:<natural id>` (a command id, an alert id, …). */
  id: string;
  /** When the event happened (ms since the epoch). */
  atMs: number;
  /** The agent it is about, when there is one. */
  agentId?: string;
  hostname?: string;
  /** The action, incident, etc. it belongs to, when there is one. */
  actionId?: string;
  incidentId?: string;
  /** A one-line summary for people (syslog MSG, HEC/ECS message). */
  message: string;
  /** The record itself, as JSON. */
  data: Record<string, unknown>;
}

export interface ExportSource {
  /** Records of a kind with a sequence number above `afterSeq`, oldest first, at most `limit`. */
  read(
    kind: ExportKind,
    afterSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; record: ExportRecord }>>;
  /** The highest sequence number of a kind (0 when none): lag = latest − cursor. */
  latest(kind: ExportKind): Promise<number>;
  /** Where a sink has got to for a kind (0 at first). */
  cursor(sink: string, kind: ExportKind): Promise<number>;
  /** Moves a sink's cursor, durably, once the receiver accepted everything up to `seq`. */
  saveCursor(sink: string, kind: ExportKind, seq: number): Promise<void>;
}
