import type { ExportKind, ExportRecord, ExportSource } from "./source.js";

/**
 * An ExportSource held in memory: for tests, and for trying a sink's
 * configuration without a store. Sequence numbers count up per kind from 1.
 */
export class MemoryExportSource implements ExportSource {
  readonly #records = new Map<ExportKind, Array<{ seq: number; record: ExportRecord }>>();
  readonly #cursors = new Map<string, number>();

  /** Stores records (each under its own kind); returns the last sequence number given. */
  add(...records: ExportRecord[]): number {
    let seq = 0;
    for (const record of records) {
      const list = this.#records.get(record.kind) ?? [];
      seq = (list.at(-1)?.seq ?? 0) + 1;
      list.push({ seq, record });
      this.#records.set(record.kind, list);
    }
    return seq;
  }

  async read(
    kind: ExportKind,
    afterSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; record: ExportRecord }>> {
    const list = this.#records.get(kind) ?? [];
    // Sequence numbers are 1, 2, 3 … so the first record after afterSeq is at index afterSeq.
    return list.slice(afterSeq, afterSeq + limit);
  }

  async latest(kind: ExportKind): Promise<number> {
    return this.#records.get(kind)?.at(-1)?.seq ?? 0;
  }

  async cursor(sink: string, kind: ExportKind): Promise<number> {
    return this.#cursors.get(`${sink}\u0000${kind}`) ?? 0;
  }

  async saveCursor(sink: string, kind: ExportKind, seq: number): Promise<void> {
    this.#cursors.set(`${sink}\u0000${kind}`, seq);
  }
}
