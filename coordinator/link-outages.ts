// When the coordinator's own NATS link was down. While it is, nothing reaches
// the coordinator, so no agent can be blamed for silence: deadlines stop, and
// a command's deadline moves by the time the link was down since it started.

/** Outages older than this no longer matter: no command runs that long. */
const KEEP_MS = 7 * 86_400_000;

export class LinkOutages {
  private readonly past: Array<{ from: number; to: number }> = [];
  private downSince?: number;
  /** When the link last came back (0: never lost). */
  lastUpAt = 0;
  /** Since then, when each agent was first heard again: its own link may have come back later. */
  private readonly heardAgain = new Map<string, number>();

  down(at: number): void {
    this.downSince ??= at;
  }

  up(at: number): void {
    if (this.downSince === undefined) return;
    this.past.push({ from: this.downSince, to: at });
    this.downSince = undefined;
    this.lastUpAt = at;
    this.heardAgain.clear();
    while (this.past.length && this.past[0]!.to < at - KEEP_MS) this.past.shift();
  }

  /** An agent was heard (a heartbeat). */
  heard(agentId: string, at: number): void {
    if (this.lastUpAt && !this.heardAgain.has(agentId)) this.heardAgain.set(agentId, at);
  }

  /** When the agent was first heard since the link came back, if it was. */
  heardAgainAt(agentId: string): number | undefined {
    return this.heardAgain.get(agentId);
  }

  isDown(): boolean {
    return this.downSince !== undefined;
  }

  /** How long the link was down between `since` and `now`. */
  downBetween(since: number, now: number): number {
    let total = 0;
    const spans =
      this.downSince === undefined ? this.past : [...this.past, { from: this.downSince, to: now }];
    for (const { from, to } of spans) total += Math.max(0, Math.min(to, now) - Math.max(from, since));
    return total;
  }
}
