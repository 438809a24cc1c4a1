import { type FileHandle, open, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { FileSinkConfig } from "./config.js";
import { recordObject } from "./formats.js";
import type { Sink } from "./sink.js";
import type { ExportRecord } from "./source.js";

// Appends records as NDJSON to a file a SIEM's forwarder tails (Filebeat,
// the Splunk universal forwarder, …). Each batch is fsynced before it counts
// as delivered. Before a write would take the file past maxBytes it is
// rotated: path → path.1 → path.2 … up to path.<keep>, the oldest removed —
// the scheme forwarders already follow. A record is never split across files.
// A batch that fails half-written is written again whole: its first records
// then appear twice, with the same ids.

export class FileSink implements Sink {
  readonly #config: FileSinkConfig;
  #handle?: FileHandle;
  #ino = 0;
  #size = 0;
  #closed = false;

  constructor(config: FileSinkConfig) {
    this.#config = config;
  }

  async deliver(records: readonly ExportRecord[]): Promise<void> {
    if (this.#closed) throw new Error("file sink closed");
    if (records.length === 0) return;
    try {
      await this.#open();
      let chunk = "";
      let chunkBytes = 0;
      for (const record of records) {
        const line = `${JSON.stringify(recordObject(record))}\n`;
        const bytes = Buffer.byteLength(line);
        if (this.#size + chunkBytes + bytes > this.#config.maxBytes && this.#size + chunkBytes > 0) {
          await this.#append(chunk, chunkBytes);
          chunk = "";
          chunkBytes = 0;
          await this.#rotate();
        }
        chunk += line;
        chunkBytes += bytes;
      }
      await this.#append(chunk, chunkBytes);
    } catch (err) {
      // Start over from what is on disk next time (the size we counted may be wrong now).
      await this.#release();
      throw new Error(`file sink ${this.#config.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#release();
  }

  /** Opens the file, again when someone moved or removed it (logrotate) since the last batch. */
  async #open(): Promise<void> {
    if (this.#handle) {
      const onDisk = await stat(this.#config.path).catch(() => undefined);
      if (onDisk?.ino === this.#ino) return;
      await this.#release();
    }
    const handle = await open(this.#config.path, "a", 0o600);
    const st = await handle.stat();
    this.#handle = handle;
    this.#ino = st.ino;
    this.#size = st.size;
  }

  async #append(chunk: string, bytes: number): Promise<void> {
    if (bytes === 0) return;
    try {
      await this.#handle!.write(chunk);
      await this.#handle!.sync();
    } catch (err) {
      // A write cut short (a full disk) would leave half a line that the retry follows: take it back.
      await this.#handle!.truncate(this.#size).catch(() => undefined);
      throw err;
    }
    this.#size += bytes;
  }

  async #rotate(): Promise<void> {
    const { path, keep } = this.#config;
    await this.#release();
    if (keep === 0) {
      await rm(path, { force: true });
    } else {
      await rm(`${path}.${keep}`, { force: true });
      for (let i = keep - 1; i >= 1; i--) await renameIfThere(`${path}.${i}`, `${path}.${i + 1}`);
      await rename(path, `${path}.1`);
    }
    await syncDirectory(dirname(path));
    await this.#open();
  }

  async #release(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close().catch(() => {});
  }
}

async function renameIfThere(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}

/** Makes renames durable: a crash right after rotation leaves the names as they were renamed. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch {
    // some file systems refuse fsync on a directory; the renames still happened
  } finally {
    await handle.close();
  }
}
