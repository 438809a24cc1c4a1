import { createHash } from "node:crypto";
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from "node:fs";
import { join } from "node:path";
import type { DriftEntry } from "../../../proto/mod.js";
import { modeString } from "../file/mode-string.js";
import { secretIn } from "../secrets.js";
import { timeSlicer } from "../time-slice.js";

// A snapshot of some paths: every entry's type, mode, owner, size, mtime,
// SHA-256 (files) and target (symlinks), and the content of small text files
// so a later comparison can show a diff. Symlinks are recorded, not followed.

export interface SnapshotEntry extends DriftEntry {
  /**
   * Small text files only (no NUL byte, at most maxContentBytes), as base64 of
   * the bytes: cheaper to keep and to serialise than decoded text (no escaping),
   * and decoded only for the files a check finds changed.
   */
  content64?: string;
  /** Inode change time: userland cannot set it, so a restored mtime does not hide an edit. */
  ctimeMs?: number;
}

export interface Snapshot {
  entries: Map<string, SnapshotEntry>;
  skipped: number;
  errors: string[];
  hashesReused: number;
}

export interface SnapshotOptions {
  paths: string[];
  excludes: RegExp[];
  maxEntries: number;
  maxContentBytes: number;
  /** A previous snapshot whose hashes may be reused for files of unchanged size, mtime and ctime. */
  reuse?: Pick<ReadonlyMap<string, SnapshotEntry>, "get">;
  signal: AbortSignal;
}

const CHUNK = 1024 * 1024;

function typeOf(st: Stats): string {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  return "other";
}

/** SHA-256 and, for a small file without NUL bytes, its text: one read. */
function readFileFacts(path: string, size: number, maxContent: number, buffer: Buffer) {
  const hash = createHash("sha256");
  const keep = size <= maxContent ? Buffer.allocUnsafe(size) : undefined;
  let kept = 0;
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
      if (keep && kept + n <= keep.length) buffer.copy(keep, kept, 0, n);
      kept += n;
    }
  } finally {
    closeSync(fd);
  }
  // No text is kept of a file that holds a secret (a key, a seed, password hashes): only its hash.
  const text =
    keep && kept === keep.length && !keep.includes(0) && !secretIn(keep.toString("latin1"), path)
      ? keep.toString("base64")
      : undefined;
  return { sha256: hash.digest("hex"), content64: text };
}

export async function takeSnapshot(o: SnapshotOptions): Promise<Snapshot> {
  const snap: Snapshot = { entries: new Map(), skipped: 0, errors: [], hashesReused: 0 };
  const buffer = Buffer.allocUnsafe(CHUNK);
  const stack = [...o.paths].reverse();
  // A big tree must not stall the agent.
  const slice = timeSlicer(o.signal);
  while (stack.length > 0) {
    await slice();
    const path = stack.pop()!;
    if (o.excludes.some((re) => re.test(path))) continue;
    if (snap.entries.size >= o.maxEntries) {
      snap.skipped++;
      continue;
    }
    let st: Stats;
    try {
      st = lstatSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") snap.errors.push(`${path}: ${code ?? err}`);
      continue;
    }
    const entry: SnapshotEntry = {
      type: typeOf(st),
      mode: modeString(st),
      uid: st.uid,
      gid: st.gid,
      size: st.isFile() ? st.size : 0,
      mtimeMs: Math.floor(st.mtimeMs),
      sha256: "",
      target: "",
      ctimeMs: Math.floor(st.ctimeMs),
    };
    try {
      if (st.isSymbolicLink()) entry.target = readlinkSync(path);
      if (st.isFile()) {
        const before = o.reuse?.get(path);
        // Size, mtime and ctime all as before: the content is taken to be too (--rehash says otherwise).
        if (
          before?.type === "file" &&
          before.size === entry.size &&
          before.mtimeMs === entry.mtimeMs &&
          before.ctimeMs === entry.ctimeMs &&
          before.sha256
        ) {
          entry.sha256 = before.sha256;
          entry.content64 = before.content64;
          snap.hashesReused++;
        } else {
          Object.assign(entry, readFileFacts(path, st.size, o.maxContentBytes, buffer));
        }
      }
      if (st.isDirectory()) {
        for (const name of readdirSync(path).sort().reverse()) stack.push(join(path, name));
      }
    } catch (err) {
      snap.errors.push(`${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    snap.entries.set(path, entry);
  }
  return snap;
}
