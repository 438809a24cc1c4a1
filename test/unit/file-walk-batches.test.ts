import { execFileSync } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { compileSearch } from "../../agent/modules/file/criteria.js";
import { CHUNK } from "../../agent/modules/file/read-once.js";
import { Walker, type WalkTask } from "../../agent/modules/file/walk.js";
import type { FileMatch } from "../../proto/api.js";
import { fileSearch, type SearchInput } from "../helpers/actions.js";
import { tempDir } from "../helpers/fleet.js";

// A search worker's walk when its time runs out inside a large directory: the
// files it did not reach go back to the scheduler in batches (so that the other
// worker can take some), and every file is still examined exactly once. Files
// that are read whatever their metadata says are opened before they are
// stat'ed: what is no longer a regular file by then is passed over, never waited on.

let root: string;
const FILES = 700;

beforeAll(() => {
  root = tempDir("dragnet-walk-batches-");
  const big = join(root, "big");
  mkdirSync(big);
  for (let i = 0; i < FILES; i++) writeFileSync(join(big, `f${i}.log`), `line ${i}\n`);
  mkdirSync(join(root, "big", "sub"));
  writeFileSync(join(root, "big", "sub", "inner.log"), "inner\n");
  symlinkSync(join(big, "f1.log"), join(big, "link-to-f1"));
});

/** Runs tasks as the scheduler would, each with `budgetMs`, until none is left; every task run. */
function walkAll(input: SearchInput, budgetMs: number) {
  const search = fileSearch({ label: "s", paths: [root], ...input });
  const walker = new Walker(compileSearch(search, 0), Buffer.alloc(CHUNK), () => false);
  const pending: WalkTask[] = [{ path: root, depth: 0, examinedToDepth: -1, matchesLeft: 1_000_000 }];
  const matches: FileMatch[] = [];
  const ran: WalkTask[] = [];
  let examined = 0;
  while (pending.length > 0) {
    const task = pending.pop()!;
    ran.push(task);
    const out = walker.run(task, budgetMs);
    matches.push(...out.matches);
    examined += out.tally.filesExamined;
    pending.push(...out.deferred);
  }
  return { matches, ran, examined };
}

const find = (...predicates: string[]) =>
  execFileSync("find", [root, "-xtype", "f", ...predicates], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .sort();

describe("several directories handed to a worker at once", () => {
  it("walks the first, then hands back the others unwalked and marked as the scheduler sent them", () => {
    const dirs = ["a", "b", "c"].map((d) => join(root, "group", d));
    for (const d of dirs) mkdirSync(join(d, "inner"), { recursive: true });
    const search = fileSearch({ label: "s", paths: [root] });
    const walker = new Walker(compileSearch(search, 0), Buffer.alloc(CHUNK), () => false);
    const task = (path: string): WalkTask => ({
      path,
      depth: 2,
      examinedToDepth: -1,
      matchesLeft: 1_000_000,
      scheduled: true,
    });
    // No time at all: the first directory is walked, nothing after it.
    const out = walker.run(task(dirs[0]!), 0, [task(dirs[1]!), task(dirs[2]!)]);
    expect(out.tally.dirsWalked).toBe(1);
    // What the first held is new to the scheduler (it checks it against what was walked);
    // the others come back as they were sent, in order.
    expect(out.deferred.map((t) => [t.path, t.scheduled])).toEqual([
      [join(dirs[0]!, "inner"), false],
      [dirs[1], true],
      [dirs[2], true],
    ]);
    // With time, all three and what they hold are walked in one task.
    expect(walker.run(task(dirs[0]!), 10_000, [task(dirs[1]!), task(dirs[2]!)]).tally.dirsWalked).toBe(6);
  });
});

describe("a search walk out of time in a large directory", () => {
  it("hands the rest back in batches of at most 256 names, and examines every file once", () => {
    // No time at all: each task does the least it must (one directory, or one file of a batch).
    const { matches, ran, examined } = walkAll({ options: { returnHashes: ["sha256"] } }, 0);
    const paths = matches.map((m) => m.path).sort();
    expect(paths).toEqual(find());
    expect(new Set(paths).size).toBe(paths.length);
    expect(examined).toBe(find().length);
    const batches = ran.filter((t) => t.batch);
    expect(batches.length).toBeGreaterThan(FILES / 256);
    expect(
      Math.max(...batches.map((t) => t.batch!.files.length + t.batch!.links.length)),
    ).toBeLessThanOrEqual(256);
    // Hashes of files reached through batches are right (sha256sum agrees).
    const f500 = matches.find((m) => m.path.endsWith("/f500.log"))!;
    const expected = execFileSync("sha256sum", [f500.path], { encoding: "utf8" }).split(" ")[0];
    expect(f500.sha256).toBe(expected);
  });

  it("finds by name across batches what find finds", () => {
    const { matches } = walkAll({ names: ["^f1[0-9]*\\.log$"] }, 0);
    expect(matches.map((m) => m.path).sort()).toEqual(find("-name", "f1*.log"));
  });

  it("passes over, without waiting, a name that is no longer a regular file when it is opened", () => {
    const dir = tempDir("dragnet-walk-fifo-");
    execFileSync("mkfifo", [join(dir, "was-a-file")]);
    writeFileSync(join(dir, "still-a-file"), "x\n");
    // The directory listed both as regular files (as readdir had said before one was replaced).
    const walk = (input: SearchInput) =>
      new Walker(
        compileSearch(fileSearch({ label: "s", paths: [dir], ...input }), 0),
        Buffer.alloc(CHUNK),
        () => false,
      ).run(
        {
          path: dir,
          depth: 1,
          examinedToDepth: -1,
          matchesLeft: 10,
          batch: { files: ["was-a-file", "still-a-file"], links: [] },
        },
        1000,
      );
    const out = walk({ options: { returnHashes: ["sha256"] } });
    expect(out.matches.map((m) => m.path)).toEqual([join(dir, "still-a-file")]);
    expect(out.errors).toEqual([]);
    // With a size check the file is stat'ed before it is opened: the same.
    const again = walk({ sizes: ["<1k"], options: { returnHashes: ["sha256"] } });
    expect(again.matches.map((m) => m.path)).toEqual([join(dir, "still-a-file")]);
  });
});
