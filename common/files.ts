import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  createReadStream,
  fsyncSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";

/** A secret (key, credentials, seed) anyone but its owner could read; Windows has no such mode bits. */
export function readableByOthers(path: string): boolean {
  return process.platform !== "win32" && (statSync(path).mode & 0o077) !== 0;
}

/** Writes a file so that readers see either the old or the new content, never half of it. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  writeFileAtomicParts(path, [data], mode);
}

/**
 * Replaces a file whole (a rename), without syncing it: for what must survive
 * the process, not the machine — an outbox entry, a status file rewritten
 * every few seconds — where an fsync each time would be a cost on a hot path.
 */
export function replaceFile(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, data, { mode });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true }); // a write cut short (a full disk) leaves nothing behind
    throw err;
  }
}

/**
 * writeFileAtomic for content produced in parts (a large document written as
 * it is serialised, never held as one string): parts are gathered into writes
 * of about 1 MiB.
 */
export function writeFileAtomicParts(path: string, parts: Iterable<string | Uint8Array>, mode = 0o644): void {
  const tmp = `${path}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(tmp, "wx", mode);
  try {
    let pending: string[] = [];
    let size = 0;
    const flush = () => {
      if (pending.length) writeSync(fd, pending.join(""));
      pending = [];
      size = 0;
    };
    for (const part of parts) {
      if (typeof part === "string") {
        pending.push(part);
        size += part.length;
        if (size >= 1 << 20) flush();
      } else {
        flush();
        writeSync(fd, part);
      }
    }
    flush();
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** SHA-256 (hex) and size of a file, read 1 MiB at a time; rejects when `signal` aborts. */
export async function sha256OfFile(
  path: string,
  signal?: AbortSignal,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}
