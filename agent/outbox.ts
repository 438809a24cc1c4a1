import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../common/mod.js";

// Results waiting for the NATS server to acknowledge them, one file per
// command in the state directory, so that a result produced while NATS or the
// coordinator is away — or just before the agent restarts — is delivered
// later. Bounded: past the limits the oldest results are dropped, with a log
// line (the coordinator then reports those commands as timed out).

export interface OutboxLimits {
  maxEntries: number;
  maxBytes: number;
}

const DEFAULT_LIMITS: OutboxLimits = { maxEntries: 1000, maxBytes: 64 * 1024 * 1024 };
const SUFFIX = ".result";

export class Outbox {
  private bytes = 0;
  private readonly sizes = new Map<string, number>();

  constructor(
    private readonly dir: string,
    private readonly log: Logger,
    private readonly limits: OutboxLimits = DEFAULT_LIMITS,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) {
      if (!name.endsWith(SUFFIX)) {
        rmSync(join(dir, name), { force: true }); // a write cut short
        continue;
      }
      const size = statSync(join(dir, name)).size;
      this.sizes.set(name.slice(0, -SUFFIX.length), size);
      this.bytes += size;
    }
  }

  get size(): number {
    return this.sizes.size;
  }

  has(commandId: string): boolean {
    return this.sizes.has(commandId);
  }

  /**
   * Keeps a result until it is acknowledged. Written whole or not at all (a
   * rename), not synced: it must survive the agent, not the machine.
   */
  add(commandId: string, data: Uint8Array): void {
    const tmp = join(this.dir, `${commandId}.tmp`);
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, join(this.dir, commandId + SUFFIX));
    this.bytes += data.length - (this.sizes.get(commandId) ?? 0);
    this.sizes.set(commandId, data.length);
    while (this.sizes.size > this.limits.maxEntries || this.bytes > this.limits.maxBytes) {
      const oldest = this.ids()[0]!;
      if (oldest === commandId) break;
      this.log.warn("outbox full: dropping the oldest undelivered result", { command: oldest });
      this.remove(oldest);
    }
  }

  /** Command ids waiting, oldest first (command ids sort by creation time). */
  ids(): string[] {
    return [...this.sizes.keys()].sort();
  }

  read(commandId: string): Uint8Array | undefined {
    try {
      return readFileSync(join(this.dir, commandId + SUFFIX));
    } catch {
      this.forget(commandId);
      return undefined;
    }
  }

  remove(commandId: string): void {
    rmSync(join(this.dir, commandId + SUFFIX), { force: true });
    this.forget(commandId);
  }

  private forget(commandId: string): void {
    this.bytes -= this.sizes.get(commandId) ?? 0;
    this.sizes.delete(commandId);
  }
}
