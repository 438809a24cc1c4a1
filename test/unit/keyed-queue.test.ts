import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Keyring, silentLogger } from "../../common/mod.js";
import { KeyedQueue } from "../../coordinator/keyed-queue.js";
import { Notebook } from "../../coordinator/notebook.js";
import { SqliteStore } from "../../coordinator/store/sqlite-store.js";
import type { Store } from "../../coordinator/store/store.js";
import { tempDir } from "../helpers/fleet.js";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("keyed queue", () => {
  it("runs one operation at a time per key, in the order asked, other keys meanwhile", async () => {
    const q = new KeyedQueue();
    const log: string[] = [];
    const op = (name: string, ms: number) => async () => {
      log.push(`${name} start`);
      await tick(ms);
      log.push(`${name} end`);
      return name;
    };
    const done = Promise.all([q.run("a", op("a1", 30)), q.run("a", op("a2", 1)), q.run("b", op("b1", 1))]);
    expect(q.busy("a")).toBe(true);
    expect(await done).toEqual(["a1", "a2", "b1"]);
    expect(log.indexOf("a2 start")).toBeGreaterThan(log.indexOf("a1 end"));
    expect(log.indexOf("b1 end")).toBeLessThan(log.indexOf("a1 end"));
    expect(q.busy("a")).toBe(false);
  });

  it("goes on with the next operation when one fails", async () => {
    const q = new KeyedQueue();
    const failed = q.run("k", () => Promise.reject(new Error("store down")));
    const next = q.run("k", async () => "next");
    await expect(failed).rejects.toThrow("store down");
    expect(await next).toBe("next");
  });
});

describe("notebook on a shared store", () => {
  it("keeps one chain when two coordinators append to the same incident at once", async () => {
    const store = new SqliteStore(join(tempDir(), "n.db"));
    // A store that answers late, as PostgreSQL does: reads and appends interleave between the two.
    const slow = new Proxy(store, {
      get(target, name) {
        const value = Reflect.get(target, name);
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          await tick(Math.random() * 5);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as Store;
    const key = generateKeyPairSync("ed25519").privateKey;
    const keyring = Keyring.fromJson({ investigators: [] });
    const first = new Notebook(slow, key, keyring, silentLogger);
    const second = new Notebook(slow, key, keyring, silentLogger);
    const incident = await first.open("two writers", "high", "alice");
    const writes = [];
    for (let i = 0; i < 20; i++) {
      const notebook = i % 2 ? first : second;
      writes.push(notebook.record(incident.id, "comment", { i }));
    }
    const pages = await Promise.all(writes);
    expect(new Set(pages.map((p) => p.seq)).size).toBe(20);
    expect(await first.verify(incident.id)).toMatchObject({ ok: true, pages: 21 });
    await store.close();
  });
});
