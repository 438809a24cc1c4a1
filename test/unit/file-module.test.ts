import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { fileModule } from "../../agent/modules/file/index.js";
import { Codes, DragnetError, silentLogger } from "../../common/mod.js";
import type { FileParams, FileResult } from "../../proto/api.js";
import { fileSearch, type SearchInput } from "../helpers/actions.js";
import { tempDir } from "../helpers/fleet.js";

// The file module against the system's own tools, on a tree made here.

let root: string;

function search(s: SearchInput): FileParams {
  return { searches: [fileSearch({ paths: [root], ...s })] };
}

async function run(params: FileParams): Promise<FileResult> {
  fileModule.check(params);
  const out = await fileModule.run(params, {
    signal: new AbortController().signal,
    log: silentLogger,
    stateDir: root,
  });
  return out.result;
}

function sh(cmd: string, args: string[]): string[] {
  return execFileSync(cmd, args, { encoding: "utf8" }).split("\n").filter(Boolean);
}

beforeAll(() => {
  root = tempDir("dragnet-file-");
  const files: Record<string, string> = {
    "a.conf": "alpha\n",
    "b.txt": "bravo\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "etc/ssh/sshd_config": "PermitRootLogin no\n",
    "etc/ssh/authorized_keys": "ssh-ed25519 AAAA test\n",
    "deep/1/2/3/4/needle.conf": "needle\n",
    "deep/1/same.txt": "alpha\n",
    "space dir/file with spaces.conf": "x\n",
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(root, rel, ".."), { recursive: true });
    writeFileSync(join(root, rel), content);
  }
  chmodSync(join(root, "b.txt"), 0o755);
  chmodSync(join(root, "etc/passwd"), 0o600);
  const tenDaysAgo = Date.now() / 1000 - 10 * 86_400;
  utimesSync(join(root, "deep/1/same.txt"), tenDaysAgo, tenDaysAgo);
  symlinkSync(join(root, "etc/passwd"), join(root, "link-to-passwd"));
  symlinkSync(join(root, "etc"), join(root, "link-to-etc"));
  symlinkSync(join(root, "nowhere"), join(root, "broken-link"));
});

describe("file module", () => {
  it("with no criteria lists exactly what find -xtype f lists (symlinked files in, symlinked dirs not descended)", async () => {
    const expected = sh("find", [root, "-xtype", "f"]).sort();
    const result = await run(search({}));
    expect(result.matches.map((m) => m.path).sort()).toEqual(expected);
    expect(result.stats!.filesExamined).toBe(expected.length);
    const link = result.matches.find((m) => m.path.endsWith("link-to-passwd"))!;
    expect(link.target).toBe(join(root, "etc/passwd"));
  });

  it("name regex matches like find -name", async () => {
    const expected = sh("find", [root, "-xtype", "f", "-name", "*.conf"]).sort();
    const result = await run(search({ names: ["\\.conf$"] }));
    expect(result.matches.map((m) => m.path).sort()).toEqual(expected);
    expect(expected.length).toBe(3);
  });

  it("an inverted name regex (!) selects the others", async () => {
    const expected = sh("find", [root, "-xtype", "f", "!", "-name", "*.conf"]).sort();
    const result = await run(search({ names: ["!\\.conf$"] }));
    expect(result.matches.map((m) => m.path).sort()).toEqual(expected);
  });

  it("a SHA-256 search returns exactly the files sha256sum says have that digest", async () => {
    const all = sh("find", [root, "-xtype", "f"]);
    const sums = sh("sha256sum", all).map((l) => {
      const [hash, ...rest] = l.split("  ");
      return { hash: hash!, path: rest.join("  ") };
    });
    const alpha = sums.find((s) => s.path.endsWith("a.conf"))!.hash;
    const expected = sums
      .filter((s) => s.hash === alpha)
      .map((s) => s.path)
      .sort();
    expect(expected.length).toBe(2);
    const result = await run(search({ sha256: [alpha.toUpperCase()] }));
    expect(result.matches.map((m) => m.path).sort()).toEqual(expected);
    for (const m of result.matches) expect(m.sha256).toBe(alpha);
  });

  it("name and hash criteria must both hold (match all)", async () => {
    const [line] = sh("sha256sum", [join(root, "etc/passwd")]);
    const hash = line!.split(" ")[0]!;
    const result = await run(search({ names: ["^passwd$"], sha256: [hash] }));
    expect(result.matches.map((m) => m.path)).toEqual([join(root, "etc/passwd")]);
  });

  it("reports metadata the way stat and ls do", async () => {
    const result = await run(search({ names: ["^passwd$"], options: { returnHashes: ["sha256"] } }));
    const m = result.matches[0]!;
    const [size, mode, uid, mtime] = sh("stat", ["-c", "%s %A %u %Y", m.path])[0]!.split(" ");
    expect(m.size).toBe(Number(size));
    expect(m.mode).toBe(mode);
    expect(m.uid).toBe(Number(uid));
    expect(Math.floor(m.mtimeMs / 1000)).toBe(Number(mtime));
    expect(m.sha256).toBe(sh("sha256sum", [m.path])[0]!.split(" ")[0]);
  });

  it("maxdepth 0 searches only files directly in the path (find -maxdepth 1)", async () => {
    for (const depth of [0, 1, 3]) {
      const expected = sh("find", [root, "-maxdepth", String(depth + 1), "-xtype", "f"]).sort();
      const result = await run(search({ options: { maxDepth: depth, returnHashes: [] } }));
      expect(result.matches.map((m) => m.path).sort(), `maxdepth ${depth}`).toEqual(expected);
    }
  });

  it("stops at the match limit and says so", async () => {
    const result = await run(search({ options: { matchLimit: 2, returnHashes: [] } }));
    expect(result.matches).toHaveLength(2);
    expect(result.stats!.truncated).toBe(true);
  });

  it("a missing path is an error in the result, not a failure", async () => {
    const result = await run({
      searches: [
        fileSearch({ label: "x", paths: [join(root, "missing"), join(root, "etc")], names: ["^passwd$"] }),
      ],
    });
    expect(result.errors).toEqual([`${join(root, "missing")}: does not exist`]);
    expect(result.matches.map((m) => m.path)).toEqual([join(root, "etc/passwd")]);
  });

  it("refuses bad parameters before running", () => {
    const refuse = (p: FileParams) => {
      try {
        fileModule.check(p);
      } catch (err) {
        return (err as DragnetError).code;
      }
      return undefined;
    };
    expect(refuse(search({ names: ["("] }))).toBe(Codes.PARAMS);
    expect(refuse(search({ sha256: ["abc"] }))).toBe(Codes.PARAMS);
    expect(refuse(search({ paths: ["relative/path"] }))).toBe(Codes.PARAMS);
    expect(refuse(search({ paths: [] }))).toBe(Codes.PARAMS);
    expect(refuse({ searches: [] })).toBe(Codes.PARAMS);
    expect(refuse(search({ options: { matchLimit: 0, returnHashes: [] } }))).toBe(Codes.PARAMS);
    expect(refuse(search({ options: { returnHashes: ["crc32"] } }))).toBe(Codes.PARAMS);
    expect(DragnetError.is(new DragnetError(Codes.PARAMS, "x"), Codes.PARAMS)).toBe(true);
  });
});
