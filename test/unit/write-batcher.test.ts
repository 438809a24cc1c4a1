import { describe, expect, it } from "vitest";
import { silentLogger } from "../../common/mod.js";
import type { Store, WriteBatch } from "../../coordinator/store/store.js";
import { WriteBatcher } from "../../coordinator/write-batcher.js";

// A store that fails when told to: the batcher must keep every write and every
// pending notification until a write succeeds.
function flakyStore() {
  const applied: WriteBatch[] = [];
  let failNext = 0;
  const store = {
    async apply(batch: WriteBatch) {
      if (failNext > 0) {
        failNext--;
        throw new Error("disk I/O error");
      }
      applied.push(batch);
    },
  } as unknown as Store;
  return { store, applied, fail: (n: number) => (failNext = n) };
}

const result = (id: string) => ({
  commandId: id,
  actionId: "x",
  agentId: "a",
  found: true,
  payload: new Uint8Array([1]),
  receivedAtMs: 1,
});

describe("write batcher", () => {
  it("keeps a failed batch, retries it, and tells watchers only after it is committed", async () => {
    const { store, applied, fail } = flakyStore();
    const b = new WriteBatcher(store, silentLogger, 5);
    fail(2);
    const told: string[] = [];
    b.result(result("c1"));
    b.afterCommit(() => told.push("c1 stored"));
    await new Promise((r) => setTimeout(r, 15));
    expect(applied).toHaveLength(0);
    expect(told).toEqual([]);
    b.result(result("c2"));
    await new Promise((r) => setTimeout(r, 200));
    expect(applied.flatMap((x) => x.results.map((r) => r.commandId))).toEqual(["c1", "c2"]);
    expect(told).toEqual(["c1 stored"]);
  });

  it("puts everything one handler writes in the same transaction, even past the batch size", async () => {
    const { store, applied } = flakyStore();
    const b = new WriteBatcher(store, silentLogger, 1000, 3);
    for (let i = 0; i < 5; i++) b.result(result(`r${i}`));
    expect(applied).toHaveLength(0);
    await new Promise((r) => setImmediate(r));
    expect(applied).toHaveLength(1);
    expect(applied[0]!.results).toHaveLength(5);
  });
});
