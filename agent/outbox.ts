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
  /** Per command: its size and the coordinator its result goes to (both in the file name). */
  private readonly entries = new Map<string, { size: number; coordinator: string }>();

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
      const [commandId, coordinator] = name.slice(0, -SUFFIX.length).split(".");
      if (!commandId || !coordinator) {
        rmSync(join(dir, name), { force: true });
        continue;
      }
      const size = statSync(join(dir, name)).size;
      this.entries.set(commandId, { size, coordinator });
      this.bytes += size;
    }
  }

  get size(): number {
    return this.entries.size;
  }

  has(commandId: string): boolean {
    return this.entries.has(commandId);
  }

  /** The coordinator a waiting result goes to. */
  coordinatorOf(commandId: string): string | undefined {
    return this.entries.get(commandId)?.coordinator;
  }

  private file(commandId: string, coordinator: string): string {
    return join(this.dir, `${commandId}.${coordinator}${SUFFIX}`);
  }

  /**
   * Keeps a result until it is acknowledged. Written whole or not at all (a
   * rename), not synced: it must survive the agent, not the machine.
   */
  add(commandId: string, coordinator: string, data: Uint8Array): void {
    if (this.entries.has(commandId)) this.remove(commandId);
    const tmp = join(this.dir, `${commandId}.tmp`);
    writeFileSync(tmp, data, { mode: 0o600 });
    renameSync(tmp, this.file(commandId, coordinator));
    this.bytes += data.length;
    this.entries.set(commandId, { size: data.length, coordinator });
    while (this.entries.size > this.limits.maxEntries || this.bytes > this.limits.maxBytes) {
      const oldest = this.ids()[0]!;
      if (oldest === commandId) break;
      this.log.warn("outbox full: dropping the oldest undelivered result", { command: oldest });
      this.remove(oldest);
    }
  }

  /** Command ids waiting, oldest first (command ids sort by creation time). */
  ids(): string[] {
    return [...this.entries.keys()].sort();
  }

  read(commandId: string): Uint8Array | undefined {
    const entry = this.entries.get(commandId);
    if (!entry) return undefined;
    try {
      return readFileSync(this.file(commandId, entry.coordinator));
    } catch {
      this.forget(commandId);
      return undefined;
    }
  }

  remove(commandId: string): void {
    const entry = this.entries.get(commandId);
    if (entry) rmSync(this.file(commandId, entry.coordinator), { force: true });
    this.forget(commandId);
  }

  private forget(commandId: string): void {
    this.bytes -= this.entries.get(commandId)?.size ?? 0;
    this.entries.delete(commandId);
  }
}
