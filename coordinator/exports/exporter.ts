import type { Logger } from "../../common/mod.js";
import type { ExportSinkConfig, RetrySettings } from "./config.js";
import { RecordsRefused } from "./refusal.js";
import { openSink, type Sink } from "./sink.js";
import type { ExportKind, ExportRecord, ExportSource } from "./source.js";

// One loop per sink: for each kind it carries, read a batch after the sink's
// cursor, deliver it, then move the cursor. Delivery is at least once: a crash
// (or a failed saveCursor) between deliver and saveCursor sends that batch
// again, and the ids show the repeats. A failed delivery keeps the cursor and
// backs off (exponential, with jitter) before trying the same records again:
// records are never skipped, a sink only falls behind (its lag).

export interface SinkStatus {
  name: string;
  type: ExportSinkConfig["type"];
  carries: ExportKind[];
  /** Records stored but not yet delivered, over all kinds it carries (latest − cursor). */
  lag: number;
  lagByKind: Partial<Record<ExportKind, number>>;
  /** When a delivery last succeeded (ms since the epoch), 0 if none since start. */
  lastSuccessMs: number;
  /** When a delivery last failed, 0 if none since start. */
  lastErrorMs: number;
  /** What went wrong last ("" if nothing since start). */
  lastError: string;
  /** Records delivered since start (repeats included). */
  delivered: number;
  /** Records the receiver refused for what they hold, set aside since start (each logged with its id). */
  skipped: number;
  /** The last attempt failed and the sink is waiting to try again. */
  retrying: boolean;
}

export interface ExporterOptions {
  /** How often an idle sink looks for new records (default 500 ms); poke() wakes it sooner. */
  pollMs?: number;
  /** How long stop() waits for a delivery in flight (default 5 s). */
  stopTimeoutMs?: number;
  /** Makes a sink's receiver end (default: openSink). */
  openSink?: (config: ExportSinkConfig) => Sink;
}

/** The delay before attempt `failures + 1`: min·2^(failures−1), capped at max, then between half and all of it. */
export function backoffMs(failures: number, retry: RetrySettings, random = Math.random): number {
  const ceiling = Math.min(retry.maxMs, retry.minMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.max(retry.minMs, Math.round(ceiling / 2 + (random() * ceiling) / 2));
}

class SinkLoop {
  readonly sink: Sink;
  lastSuccessMs = 0;
  lastErrorMs = 0;
  lastError = "";
  delivered = 0;
  /** Records the receiver refused for good, set aside (logged). */
  skipped = 0;
  retrying = false;
  failures = 0;
  #wake?: () => void;
  #poked = false;

  constructor(
    readonly config: ExportSinkConfig,
    makeSink: (config: ExportSinkConfig) => Sink,
  ) {
    this.sink = makeSink(config);
  }

  /** Ends a wait early (new records, or stop). */
  wake(): void {
    this.#poked = true;
    this.#wake?.();
  }

  /** Waits `ms`, or less when woken; a wake that came while busy ends the next wait at once. */
  wait(ms: number): Promise<void> {
    if (this.#poked) {
      this.#poked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        this.#poked = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}

export class Exporter {
  readonly #source: ExportSource;
  readonly #log: Logger;
  readonly #loops: SinkLoop[];
  readonly #pollMs: number;
  readonly #stopTimeoutMs: number;
  #running: Promise<void>[] = [];
  #stopping = false;

  constructor(source: ExportSource, sinks: ExportSinkConfig[], log: Logger, options: ExporterOptions = {}) {
    this.#source = source;
    this.#log = log;
    this.#pollMs = options.pollMs ?? 500;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 5_000;
    const make = options.openSink ?? openSink;
    this.#loops = sinks.map((config) => new SinkLoop(config, make));
  }

  /** Starts every sink's loop (once). */
  start(): void {
    if (this.#running.length || this.#stopping) return;
    this.#running = this.#loops.map((loop) => this.#run(loop));
  }

  /** New records were stored: idle sinks look now rather than at their next poll. */
  poke(): void {
    for (const loop of this.#loops) if (!loop.retrying) loop.wake();
  }

  /** Ends the loops, waiting (bounded) for deliveries in flight, then closes the receivers' ends. */
  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const loop of this.#loops) loop.wake();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(this.#running),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    // Closing rejects a delivery still in flight; its loop then ends without moving the cursor.
    await Promise.allSettled(this.#loops.map((loop) => loop.sink.close()));
    await Promise.allSettled(this.#running);
  }

  async status(): Promise<SinkStatus[]> {
    const out: SinkStatus[] = [];
    for (const loop of this.#loops) {
      const lagByKind: Partial<Record<ExportKind, number>> = {};
      let lag = 0;
      for (const kind of loop.config.carries) {
        let behind = 0;
        try {
          const [latest, cursor] = await Promise.all([
            this.#source.latest(kind),
            this.#source.cursor(loop.config.name, kind),
          ]);
          behind = Math.max(0, latest - cursor);
        } catch {
          // the store is failing: the loop records that error; status still answers
        }
        lagByKind[kind] = behind;
        lag += behind;
      }
      out.push({
        name: loop.config.name,
        type: loop.config.type,
        carries: [...loop.config.carries],
        lag,
        lagByKind,
        lastSuccessMs: loop.lastSuccessMs,
        lastErrorMs: loop.lastErrorMs,
        lastError: loop.lastError,
        delivered: loop.delivered,
        skipped: loop.skipped,
        retrying: loop.retrying,
      });
    }
    return out;
  }

  async #run(loop: SinkLoop): Promise<void> {
    const { name } = loop.config;
    while (!this.#stopping) {
      let moved = false;
      try {
        // One batch of each kind per pass, so a flood of results does not hold alerts back.
        for (const kind of loop.config.carries) {
          if (this.#stopping) break;
          moved = (await this.#deliverBatch(loop, kind)) || moved;
        }
        if (loop.retrying) this.#log.info("export sink delivering again", { sink: name });
        loop.retrying = false;
        loop.failures = 0;
      } catch (err) {
        if (this.#stopping) break;
        loop.failures++;
        loop.retrying = true;
        loop.lastErrorMs = Date.now();
        loop.lastError = (err as Error).message ?? String(err);
        const delay = backoffMs(loop.failures, loop.config.retry);
        this.#log.warn("export sink failed; will retry", {
          sink: name,
          error: loop.lastError,
          attempt: loop.failures,
          retryInMs: delay,
        });
        await loop.wait(delay);
        continue;
      }
      if (!moved) await loop.wait(this.#pollMs);
    }
  }

  /** Delivers the next batch of one kind; true when there was one. */
  async #deliverBatch(loop: SinkLoop, kind: ExportKind): Promise<boolean> {
    const { name, batch } = loop.config;
    const after = await this.#source.cursor(name, kind);
    const rows = await this.#source.read(kind, after, batch);
    if (rows.length === 0) return false;
    try {
      await loop.sink.deliver(rows.map((row) => row.record));
    } catch (err) {
      if (!(err instanceof RecordsRefused)) throw err;
      await this.#oneByOne(loop, kind, rows, err);
      return true;
    }
    // Delivered: from here until saveCursor returns, a crash means the batch goes again.
    await this.#source.saveCursor(name, kind, rows[rows.length - 1]!.seq);
    loop.delivered += rows.length;
    loop.lastSuccessMs = Date.now();
    return true;
  }

  /**
   * The receiver refused a batch for what it holds: each record is sent alone,
   * and one still refused is set aside — logged with its id and why, counted in
   * the status — so that the records after it are not held back for good. Any
   * other failure ends this as usual (the cursor stays after the last record taken).
   */
  async #oneByOne(
    loop: SinkLoop,
    kind: ExportKind,
    rows: Array<{ seq: number; record: ExportRecord }>,
    batchRefusal: RecordsRefused,
  ): Promise<void> {
    const { name } = loop.config;
    for (const row of rows) {
      try {
        await loop.sink.deliver([row.record]);
        loop.delivered++;
        loop.lastSuccessMs = Date.now();
      } catch (err) {
        if (!(err instanceof RecordsRefused)) throw err;
        loop.skipped++;
        loop.lastErrorMs = Date.now();
        loop.lastError = `set aside ${row.record.id}: ${err.message}`;
        this.#log.error("export sink refused a record for what it holds; it is set aside", {
          sink: name,
          record: row.record.id,
          error: rows.length > 1 ? err.message : batchRefusal.message,
        });
      }
      await this.#source.saveCursor(name, kind, row.seq);
    }
  }
}
