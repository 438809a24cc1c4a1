import { closeSync, fdatasyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { writeFileAtomic } from "../common/mod.js";

/**
 * Remembers every signed action id this agent has accepted, on disk, so that
 * the same action is never run twice, whatever command id wraps it and across
 * restarts. An id only needs remembering until its action expires (after that
 * the validity window refuses it anyway), so expired entries are dropped.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly file: string,
    skewMs: number,
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
  remember(actionId: string, expiresAtMs: number): void {
    this.seen.set(actionId, expiresAtMs);
    const fd = openSync(this.file, "a", 0o600);
    try {
      writeSync(fd, `${actionId} ${expiresAtMs}\n`);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  private compact(): void {
    const body = [...this.seen].map(([id, at]) => `${id} ${at}\n`).join("");
    writeFileAtomic(this.file, body, 0o600);
  }
}
