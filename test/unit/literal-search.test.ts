import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { describe, expect, it } from "vitest";
import { findLiteral, prepareLiteral, scanBuffer } from "../../agent/modules/file/literal-search.js";

// The content search's literal scan (WebAssembly SIMD) must give Buffer.indexOf's
// answer for every chunk and literal: Buffer.indexOf is the reference here.

const SIZE = 64 * 1024;

/** A deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe("literal scan", () => {
  const buffer = scanBuffer(SIZE);

  it("reads files into WebAssembly memory here, so the kernel is what these tests exercise", () => {
    // A plain buffer would mean the fallback (Buffer.indexOf) answered every case below.
    expect(buffer.length).toBe(SIZE);
    expect(buffer.buffer.byteLength).toBeGreaterThan(SIZE);
    expect(buffer.byteOffset).toBeGreaterThan(0);
  });

  it("agrees with Buffer.indexOf on random chunks over a small alphabet (many near misses)", () => {
    const next = random(26);
    const alphabet = Buffer.from("ab\0\xff", "latin1");
    let found = 0;
    for (let round = 0; round < 3000; round++) {
      const n = Math.floor(next() * (round % 10 === 0 ? SIZE : 300));
      for (let i = 0; i < n; i++) buffer[i] = alphabet[Math.floor(next() * alphabet.length)]!;
      const k = 1 + Math.floor(next() * 12);
      const text = Array.from({ length: k }, () =>
        String.fromCharCode(alphabet[Math.floor(next() * 4)]!),
      ).join("");
      const literal = prepareLiteral(text);
      const chunk = buffer.subarray(0, n);
      const want = chunk.indexOf(literal.bytes);
      expect(findLiteral(chunk, literal), `round ${round}: "${text}" in ${n} bytes`).toBe(want);
      if (want >= 0) found++;
    }
    // Both outcomes were exercised.
    expect(found).toBeGreaterThan(500);
    expect(found).toBeLessThan(2900);
  });

  it("finds a literal planted at every offset around the 32-byte steps, and at the chunk's very end", () => {
    const literal = prepareLiteral("Permission is hereby granted");
    const k = literal.bytes.length;
    for (const n of [k, k + 1, 31, 32, 33, 63, 64, 65, 200, SIZE]) {
      for (let at = 0; at + k <= n; at += at < 70 || at > n - 70 ? 1 : 997) {
        buffer.fill(0x65, 0, n); // 'e': the literal's common letters, not its rare ones
        literal.bytes.copy(buffer, at);
        expect(findLiteral(buffer.subarray(0, n), literal), `at ${at} of ${n}`).toBe(at);
      }
    }
  });

  it("does not find a literal that only the bytes past the chunk would complete", () => {
    const literal = prepareLiteral("hereby granted");
    const memory = Buffer.from(buffer.buffer);
    const end = buffer.byteOffset + 100;
    // The literal's last 5 bytes lie past the chunk's end (in memory the kernel reads but must not count).
    memory.fill(0x20, buffer.byteOffset, end + 64);
    literal.bytes.copy(memory, end - (literal.bytes.length - 5));
    expect(findLiteral(buffer.subarray(0, 100), literal)).toBe(-1);
    expect(findLiteral(buffer.subarray(0, 105), literal)).toBe(100 - (literal.bytes.length - 5));
  });

  it("answers for a chunk elsewhere (a gzip file's output) and for a literal too long for the scan memory", () => {
    const plain = Buffer.alloc(10_000, "x");
    Buffer.from("needle").copy(plain, 9000);
    expect(findLiteral(plain, prepareLiteral("needle"))).toBe(9000);
    expect(findLiteral(plain, prepareLiteral("needles"))).toBe(-1);
    const long = "y".repeat(5000);
    buffer.fill("y", 0, 6000);
    buffer[0] = 0x78;
    expect(findLiteral(buffer.subarray(0, 6000), prepareLiteral(long))).toBe(1);
    expect(findLiteral(buffer.subarray(0, 4000), prepareLiteral(long))).toBe(-1);
  });

  it("alternates literals over one memory without mixing them up", () => {
    const a = prepareLiteral("alpha-literal");
    const b = prepareLiteral("bravo-literal");
    buffer.fill(0x2e, 0, 400);
    b.bytes.copy(buffer, 300);
    for (let i = 0; i < 3; i++) {
      expect(findLiteral(buffer.subarray(0, 400), a)).toBe(-1);
      expect(findLiteral(buffer.subarray(0, 400), b)).toBe(300);
    }
  });

  it("compares first the literal's rare bytes, not its spaces and common letters", () => {
    const literal = prepareLiteral("ermission is hereby granted");
    const [first, second] = literal.rare.map((i) => String.fromCharCode(literal.bytes[i]!));
    expect(first).not.toBe(second);
    for (const common of [" ", "e", "s", "i"]) {
      expect(first).not.toBe(common);
      expect(second).not.toBe(common);
    }
    expect(prepareLiteral("aaa").rare).toEqual([0, 1]);
  });

  it("falls back to a plain buffer where a WebAssembly memory is refused (a low ulimit -v), with the same answers", () => {
    const dir = mkdtempSync(join(tmpdir(), "dragnet-literal-"));
    try {
      const bundle = join(dir, "literal-search.cjs");
      buildSync({
        entryPoints: [fileURLToPath(new URL("../../agent/modules/file/literal-search.ts", import.meta.url))],
        bundle: true,
        platform: "node",
        format: "cjs",
        outfile: bundle,
        logLevel: "error",
      });
      const probe = join(dir, "probe.cjs");
      writeFileSync(
        probe,
        `const m = require(${JSON.stringify(bundle)});
const b = m.scanBuffer(1 << 20);
b.fill(0x61);
Buffer.from("needle").copy(b, 5000);
console.log(JSON.stringify({ wasm: b.buffer.byteLength > b.length, at: m.findLiteral(b, m.prepareLiteral("needle")) }));`,
      );
      const run = (limit: string) => {
        const r = spawnSync("sh", ["-c", `${limit} exec "${process.execPath}" "${probe}"`], {
          encoding: "utf8",
        });
        expect(r.status, r.stderr).toBe(0);
        return JSON.parse(r.stdout);
      };
      expect(run("")).toEqual({ wasm: true, at: 5000 });
      expect(run("ulimit -v 4000000;")).toEqual({ wasm: false, at: 5000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
