import { closeSync, fdatasyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { writeFileAtomic } from "../common/mod.js";

const COMPACT_EVERY = 1000;

interface Entry {
  expiresAtMs: number;
  /** The command that carried the action here ("" in files from before commands were recorded). */
  commandId: string;
  /** The coordinator that sent it (where a crash report goes). */
  coordinator: string;
  /** Its result was produced (and handed to the outbox). */
  finished: boolean;
}

/**
 * Remembers every signed action id this agent has accepted, on disk, so that
 * the same action is never run twice, whatever command id wraps it and across
 * restarts. An id only needs remembering until its action expires (after that
 * the validity window refuses it anyway), so expired entries are dropped.
 *
 * It also knows which accepted commands never produced a result: after a
 * crash or a kill those are reported as failed, never run again.
 *
 * File format, one line each: `<actionId> <expiresAtMs> <commandId> <coordinator>`
 * when accepted, `done <commandId>` when its result exists.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, Entry>();
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
    const done = new Set<string>();
    for (const line of text.split("\n")) {
      const [first, second, third, fourth] = line.split(" ");
      if (!first || !second) continue;
      lines++;
      if (first === "done") {
        done.add(second);
        continue;
      }
      const at = Number(second);
      if (Number.isFinite(at)) {
        this.seen.set(first, {
          expiresAtMs: at,
          commandId: third ?? "",
          coordinator: fourth ?? "",
          finished: !third,
        });
      }
    }
    for (const e of this.seen.values()) if (done.has(e.commandId)) e.finished = true;
    // Expired ids go, but not a command that never finished: however long the agent
    // was down, it still reports that command as lost (recoverInterrupted).
    for (const [id, e] of this.seen) if (this.expired(e, now) && e.finished) this.seen.delete(id);
    if (lines > this.seen.size) this.compact();
  }

  has(actionId: string): boolean {
    return this.seen.has(actionId);
  }

  /** Records the id durably before the action runs: a crash mid-run never re-runs it. */
  remember(actionId: string, expiresAtMs: number, commandId = "", coordinator = "", now = Date.now()): void {
    this.seen.set(actionId, { expiresAtMs, commandId, coordinator, finished: !commandId });
    if (++this.sinceCompaction >= COMPACT_EVERY) {
      this.prune(now); // rewrites the file, this id included (writeFileAtomic syncs it)
      return;
    }
    this.append(`${actionId} ${expiresAtMs} ${commandId} ${coordinator}\n`, true);
  }

  /**
   * Notes that a command's result exists. Not synced: should the note be lost
   * in a crash, the agent reports the command as failed once more under the
   * same command id, which JetStream and the coordinator store only once.
   */
  finished(commandId: string): void {
    for (const e of this.seen.values()) {
      if (e.commandId === commandId) {
        if (e.finished) return;
        e.finished = true;
      }
    }
    try {
      this.append(`done ${commandId}\n`, false);
    } catch {
      // A full state directory: the result itself is what matters (see above).
    }
  }

  /** Commands accepted but never finished: the agent stopped while running them. */
  unfinished(): Array<{ actionId: string; commandId: string; coordinator: string }> {
    return [...this.seen]
      .filter(([, e]) => !e.finished && e.commandId)
      .map(([actionId, e]) => ({ actionId, commandId: e.commandId, coordinator: e.coordinator }));
  }

  /** Forgets ids whose actions have expired, in memory and on disk. */
  prune(now = Date.now()): void {
    for (const [id, e] of this.seen) if (this.expired(e, now) && e.finished) this.seen.delete(id);
    this.compact();
  }

  private expired(e: Entry, now: number): boolean {
    return e.expiresAtMs + this.skewMs <= now;
  }

  get size(): number {
    return this.seen.size;
  }

  private append(line: string, sync: boolean): void {
    const fd = openSync(this.file, "a", 0o600);
    try {
      writeSync(fd, line);
      if (sync) fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  private compact(): void {
    this.sinceCompaction = 0;
    const body = [...this.seen]
      .map(
        ([id, e]) =>
          `${id} ${e.expiresAtMs} ${e.commandId} ${e.coordinator}\n${e.finished && e.commandId ? `done ${e.commandId}\n` : ""}`,
      )
      .join("");
    writeFileAtomic(this.file, body, 0o600);
  }
}
