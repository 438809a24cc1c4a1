import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Logger, replaceFile } from "../common/mod.js";

// Messages (results, alerts) waiting for the NATS server to acknowledge
// them, one file per message in the state directory, so that one produced
// while NATS or the destination is away — or just before the agent restarts —
// is delivered later. Bounded: past the limits the oldest are dropped, with a
// log line (the destination then reports a dropped result's command as timed
// out). Message ids sort by creation time; each message keeps a destination
// token (a result's destination) in its file name.

export interface OutboxLimits {
  maxEntries: number;
  maxBytes: number;
}

const DEFAULT_LIMITS: OutboxLimits = { maxEntries: 1000, maxBytes: 64 * 1024 * 1024 };

export class Outbox {
  private bytes = 0;
  /** Per message: its size and destination (both in the file name). */
  private readonly entries = new Map<string, { size: number; destination: string }>();
  /** Messages the state directory would not take (full, read-only): kept here until delivered. */
  private readonly inMemory = new Map<string, Uint8Array>();
  /** Why the last write failed, until one succeeds again (the heartbeat and status report it). */
  problem?: string;

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
    private readonly limits: OutboxLimits = DEFAULT_LIMITS,
    /** File name ending, saying what the messages are (".result", ".alert"). */
    private readonly suffix = ".result",
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) {
      if (!name.endsWith(suffix)) {
        rmSync(join(dir, name), { force: true }); // a write cut short
        continue;
      }
      const [id, destination] = name.slice(0, -suffix.length).split(".");
      if (!id || !destination) {
        rmSync(join(dir, name), { force: true });
        continue;
      }
      const size = statSync(join(dir, name)).size;
      this.entries.set(id, { size, destination });
      this.bytes += size;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Where a waiting message goes (a result: its coordinator). */
  destinationOf(id: string): string | undefined {
    return this.entries.get(id)?.destination;
  }

  private file(id: string, destination: string): string {
    return join(this.dir, `${id}.${destination}${this.suffix}`);
  }

  /**
   * Keeps a message until it is acknowledged. Written whole or not at all (a
   * rename), not synced: it must survive the agent, not the machine.
   */
  add(id: string, destination: string, data: Uint8Array): void {
    if (this.entries.has(id)) this.remove(id);
    try {
      replaceFile(this.file(id, destination), data, 0o600);
      this.problem = undefined;
    } catch (err) {
      // A full state directory must not lose the message or stop the agent: it is kept
      // in memory (lost only if the agent stops before delivering it) and said so.
      const code = (err as NodeJS.ErrnoException).code;
      const problem =
        code === "ENOSPC" || code === "EDQUOT"
          ? `state directory full (${this.dir}): undelivered messages are kept in memory only`
          : `state directory not writable (${code ?? (err as Error).message}): undelivered messages are kept in memory only`;
      if (problem !== this.problem) this.log.error(problem, { kind: this.suffix, error: err });
      this.problem = problem;
      this.inMemory.set(id, data);
    }
    this.bytes += data.length;
    this.entries.set(id, { size: data.length, destination });
    while (this.entries.size > this.limits.maxEntries || this.bytes > this.limits.maxBytes) {
      const oldest = this.ids()[0]!;
      if (oldest === id) break;
      this.log.warn("outbox full: dropping the oldest undelivered message", {
        id: oldest,
        kind: this.suffix,
      });
      this.remove(oldest);
    }
  }

  /**
   * After a failed write: tries the state directory again, and once it takes
   * writes, moves what waits in memory to disk (where it survives a restart)
   * and clears the problem. Called with every heartbeat.
   */
  recheck(): void {
    if (!this.problem) return;
    for (const [id, data] of this.inMemory) {
      const entry = this.entries.get(id)!;
      try {
        replaceFile(this.file(id, entry.destination), data, 0o600);
      } catch {
        return;
      }
      this.inMemory.delete(id);
    }
    try {
      const probe = join(this.dir, ".probe");
      replaceFile(probe, "", 0o600);
      rmSync(probe, { force: true });
    } catch {
      return;
    }
    this.log.info("state directory writable again", { kind: this.suffix });
    this.problem = undefined;
  }

  /** Message ids waiting, oldest first (ids sort by creation time). */
  ids(): string[] {
    return [...this.entries.keys()].sort();
  }

  read(id: string): Uint8Array | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    const held = this.inMemory.get(id);
    if (held) return held;
    try {
      return readFileSync(this.file(id, entry.destination));
    } catch {
      this.forget(id);
      return undefined;
    }
  }

  remove(id: string): void {
    const entry = this.entries.get(id);
    if (entry && !this.inMemory.has(id)) rmSync(this.file(id, entry.destination), { force: true });
    this.forget(id);
  }

  private forget(id: string): void {
    this.bytes -= this.entries.get(id)?.size ?? 0;
    this.entries.delete(id);
    this.inMemory.delete(id);
  }
}
