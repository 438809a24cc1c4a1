import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { boundErrors } from "../../agent/modules/error-list.js";
import { readSmallText } from "../../agent/modules/host/small-file.js";
import { tempDir } from "../helpers/fleet.js";

// The reader every inventory module uses on files a host's owner controls:
// a FIFO in a file's place does not hang it, procfs files (size 0) are read
// whole, and the cap holds.

const dir = tempDir("dragnet-small-file-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("readSmallText", () => {
  it("refuses a FIFO at once instead of waiting for a writer", async () => {
    const fifo = join(dir, "authorized_keys");
    execFileSync("mkfifo", [fifo]);
    const errors: string[] = [];
    const started = performance.now();
    expect(await readSmallText(fifo, errors)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(errors).toEqual([`${fifo}: not a regular file, not read`]);
  });

  it("reads a procfs file, which says it is empty, to its end", async () => {
    const errors: string[] = [];
    const text = await readSmallText("/proc/self/status", errors);
    expect(errors).toEqual([]);
    expect(text).toMatch(/^Name:\s/);
    expect(text).toMatch(/^Pid:\s+\d+$/m);
    // As the kernel gives it (fields that move, such as memory, aside).
    expect(text!.split("\n")[0]).toBe(readFileSync("/proc/self/status", "utf8").split("\n")[0]);
  });

  it("skips a file over the cap, saying so, or gives its first bytes when asked to cut", async () => {
    const big = join(dir, "big");
    writeFileSync(big, "x".repeat(100));
    const errors: string[] = [];
    expect(await readSmallText(big, errors, { maxBytes: 99 })).toBeUndefined();
    expect(errors).toEqual([`${big}: over 99 bytes: not read`]);
    expect(await readSmallText(big, [], { maxBytes: 100 })).toBe("x".repeat(100));
    expect(await readSmallText(big, [], { maxBytes: 10, truncate: true })).toBe("x".repeat(10));
    const missing: string[] = [];
    expect(await readSmallText(join(dir, "nope"), missing, { optional: true })).toBeUndefined();
    expect(missing).toEqual([]);
  });
});

describe("boundErrors", () => {
  it("keeps the first 50 errors and counts the rest in one line", () => {
    const many = Array.from({ length: 1000 }, (_, i) => `line ${i + 1}: no key`);
    const kept = boundErrors(many);
    expect(kept).toHaveLength(51);
    expect([kept[0], kept[49], kept[50]]).toEqual([
      "line 1: no key",
      "line 50: no key",
      "… and 950 more errors",
    ]);
    expect(boundErrors(many.slice(0, 50))).toEqual(many.slice(0, 50));
  });
});
