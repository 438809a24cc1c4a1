import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";

/** Writes a file so that readers see either the old or the new content, never half of it. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  writeFileAtomicParts(path, [data], mode);
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
