import { closeSync, fdatasyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { writeFileAtomic } from "../common/mod.js";

const COMPACT_EVERY = 1000;

/**
 * Remembers every signed action id this agent has accepted, on disk, so that
 * the same action is never run twice, whatever command id wraps it and across
 * restarts. An id only needs remembering until its action expires (after that
 * the validity window refuses it anyway), so expired entries are dropped.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  private sinceCompaction = 0;

  constructor(
    private readonly file: string,
    private readonly skewMs: number,
    now = Date.now(),
  ) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    let lines = 0;
    for (const line of text.split("\n")) {
      const [id, expires] = line.split(" ");
      if (!id || !expires) continue;
      lines++;
      const at = Number(expires);
      if (Number.isFinite(at) && at + skewMs > now) this.seen.set(id, at);
    }
    if (lines > this.seen.size) this.compact();
  }

  has(actionId: string): boolean {
    return this.seen.has(actionId);
  }

  /** Records the id durably before the action runs: a crash mid-run never re-runs it. */
  remember(actionId: string, expiresAtMs: number, now = Date.now()): void {
    this.seen.set(actionId, expiresAtMs);
    if (++this.sinceCompaction >= COMPACT_EVERY) {
      this.prune(now); // rewrites the file, this id included (writeFileAtomic syncs it)
      return;
    }
    const fd = openSync(this.file, "a", 0o600);
    try {
      writeSync(fd, `${actionId} ${expiresAtMs}\n`);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Forgets ids whose actions have expired, in memory and on disk. */
  prune(now = Date.now()): void {
    for (const [id, at] of this.seen) if (at + this.skewMs <= now) this.seen.delete(id);
    this.compact();
  }

  get size(): number {
    return this.seen.size;
  }

  private compact(): void {
    this.sinceCompaction = 0;
    const body = [...this.seen].map(([id, at]) => `${id} ${at}\n`).join("");
    writeFileAtomic(this.file, body, 0o600);
  }
}
