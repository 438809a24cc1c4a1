// At most so many entries a minute per key (a source, an agent): what is over
// is counted, and the count handed back when that key's next minute starts,
// so that a flood can neither fill a log nor pass unseen.

export class MinuteBudget<K> {
  private readonly windows = new Map<K, { since: number; count: number; suppressed: number }>();

  constructor(
    private readonly perMinute: number,
    /** Keys kept at most (each agent is one): past this, the oldest windows are forgotten. */
    private readonly maxKeys = 10_000,
  ) {}

  /**
   * Whether one more entry for `key` fits its minute. When a minute in which
   * entries were left out is over, `leftOut` hears how many, and since when.
   */
  take(key: K, now: number, leftOut: (count: number, since: number) => void): boolean {
    let w = this.windows.get(key);
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.windows.delete(this.windows.keys().next().value as K);
      w = { since: now, count: 0, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (now - w.since >= 60_000) {
      if (w.suppressed) leftOut(w.suppressed, w.since);
      w.since = now;
      w.count = 0;
      w.suppressed = 0;
    }
    if (++w.count > this.perMinute) {
      w.suppressed++;
      return false;
    }
    return true;
  }
}
