// Work on one key at a time, in the order it was asked for. Before the store
// was asynchronous a read, a decision and a write happened in one synchronous
// step; now each awaits the store, and two requests for the same thing (an
// action submitted twice at once, a result delivered twice, two pages for one
// notebook) could interleave. Queued by key, each still sees what the one
// before it did, while other keys go on meanwhile.

export class KeyedQueue {
  /** Each key's last operation, settled or not; gone once nothing waits on the key. */
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `op` once every operation asked for earlier on `key` has ended (whether it failed or not). */
  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const result = before.then(op);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Whether an operation on `key` is running or waiting. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }
}
