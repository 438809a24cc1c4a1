import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import { Codes, signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { AGENT_EXE, dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// Answers that come late, and answers that must not look final too early:
// the coordinator's own NATS link down longer than an action's timeout (no
// deadline runs while it hears nothing), an agent back long after its action
// expired (it still reports the command it lost), and what `action show`
// says of a late or cut answer.

let fleet: TestFleet;
let home: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ heartbeatIntervalMs: 300, resultGraceMs: 500 });
  home = fleet.consoleHome();
});

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await fleet?.stop();
});

describe("the coordinator's NATS link down past an action's timeout", () => {
  it("times nothing out meanwhile: the results produced during the outage arrive and are the only answer", async () => {
    const slow = defineModule({
      ...fileModule,
      async run(params, ctx) {
        await new Promise((r) => setTimeout(r, 1000));
        return fileModule.run(params, ctx);
      },
    });
    const agents = [
      await fleet.addAgent({ hostname: "outage-1", modules: [slow] }),
      await fleet.addAgent({ hostname: "outage-2", modules: [slow] }),
    ];
    await eventually(async () =>
      (await fleet.api.listAgents("hostname ~ outage")).length === 2 ? true : undefined,
    );
    // Timeout 2 s + grace 0.5 s; the link is down 5 s.
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: "hostname ~ outage", timeoutMs: 2000 });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const watching = collectResults(fleet.api, body.id);
    await eventually(async () => {
      const { results } = await fleet.api.getAction(body.id, true);
      return results.every((r) => r.status === CommandStatus.COMMAND_STATUS_RUNNING) ? true : undefined;
    });
    await fleet.restartNats(5000);
    const { results, done } = await watching;
    // What the watcher heard is all success — no TIMEOUT first — and so is what was stored.
    expect(results.map((r) => [r.agentId, r.status]).sort()).toEqual(
      agents.map((a) => [a.id, CommandStatus.COMMAND_STATUS_SUCCESS]).sort(),
    );
    expect(done!.counts).toMatchObject({ targeted: 2, success: 2, timeout: 0 });
    const stored = await fleet.api.getAction(body.id, true);
    expect(stored.results.map((r) => r.status)).toEqual([
      CommandStatus.COMMAND_STATUS_SUCCESS,
      CommandStatus.COMMAND_STATUS_SUCCESS,
    ]);
  }, 60_000);
});

describe("an agent SIGKILLed mid-command, back after its action expired", () => {
  it("still reports the command lost; the coordinator's TIMEOUT becomes FAILED, and action show says it came late", async () => {
    const dir = tempDir("dragnet-late-");
    const stateDir = join(dir, "state");
    const link = await fleet.prepareAgent(stateDir);
    const config = join(dir, "agent.json");
    // The replay record outlives an action by the clock skew allowed (1 s here, 60 s by default).
    writeFileSync(
      config,
      JSON.stringify({
        nats: { servers: link.nats, ca: link.natsCa, creds: link.natsCreds },
        keyring: fleet.keyringPath,
        stateDir,
        hostname: "late",
        heartbeatIntervalMs: 300,
        clockSkewMs: 1000,
      }),
      { mode: 0o600 },
    );
    const start = () => {
      const child = spawn(AGENT_EXE, ["run", "--config", config], { env: {}, stdio: "ignore" });
      children.push(child);
      return child;
    };
    let agent = start();
    await eventually(async () =>
      (await fleet.api.listAgents('hostname == "late"')).length ? true : undefined,
    );
    // Hashing every file under /usr against a digest nothing has: seconds of work.
    const now = Date.now();
    const body = fileAction(
      { paths: ["/usr"], sha256: ["00".repeat(32)], options: { maxDepth: 64, returnHashes: [] } },
      { target: 'hostname == "late"', timeoutMs: 2000, expiresAtMs: now + 3000 },
    );
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await eventually(async () => {
      const [r] = (await fleet.api.getAction(body.id, true)).results;
      return r?.status === CommandStatus.COMMAND_STATUS_RUNNING ? true : undefined;
    });
    agent.kill("SIGKILL");
    await new Promise((r) => agent.once("exit", r));
    // The coordinator gives up (timeout 2 s + grace 0.5 s): complete, one TIMEOUT.
    const timedOut = await eventually(async () => {
      const detail = await fleet.api.getAction(body.id, true);
      return detail.summary?.complete ? detail : undefined;
    }, 10_000);
    expect(timedOut.results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_TIMEOUT]);
    // Back well after expiry + skew.
    await new Promise((r) => setTimeout(r, Math.max(0, body.expiresAtMs + 1000 + 1500 - Date.now())));
    agent = start();
    const lost = await eventually(async () => {
      const [r] = (await fleet.api.getAction(body.id, true)).results;
      return r?.status === CommandStatus.COMMAND_STATUS_FAILED ? r : undefined;
    }, 15_000);
    expect(lost.problem?.code).toBe(Codes.AGENT_LOST);
    const shown = await dragnet(["--home", home, "action", "show", body.id]);
    expect(shown.stdout).toMatch(/failed .*after completion/);
    expect(shown.stderr).toMatch(
      /the answer changed after the action completed .*: 1 result came late — late/,
    );
    const json = ndjson((await dragnet(["--home", home, "action", "show", body.id, "--json"])).stdout);
    expect(json.map((r) => [r.status, r.late])).toEqual([["failed", true]]);
  }, 60_000);
});

describe("action show --results", () => {
  it("says an answer was cut to fit the result limit, as the live sweep did", async () => {
    const agent = await fleet.addAgent({ hostname: "big" });
    await eventually(async () =>
      (await fleet.api.listAgents('hostname == "big"')).length ? true : undefined,
    );
    // Every file under /usr, by name: far more than 1 MiB of matches.
    const body = fileAction(
      { paths: ["/usr"], names: ["."], options: { maxDepth: 64, returnHashes: [], matchLimit: 1_000_000 } },
      { target: `id == "${agent.id}"`, timeoutMs: 60_000 },
    );
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await collectResults(fleet.api, body.id);
    const shown = await dragnet(["--home", home, "action", "show", body.id, "--results", "--json"]);
    expect(shown.code).toBe(0);
    expect(ndjson(shown.stdout).length).toBeGreaterThan(1000);
    expect(shown.stderr).toMatch(
      /big \(\w+\): the answer was over the 1 MiB result limit and was cut: [1-9]\d* entries left out/,
    );
  }, 90_000);
});

describe("a host that died seconds before a sweep", () => {
  it("does not stall it: the sweep returns once the others answered and the silence lasted, naming who is missing", async () => {
    await fleet.addAgent({ hostname: "stall-1" });
    const dir = tempDir("dragnet-stall-");
    const flags = await fleet.agentExeFlags(join(dir, "state"));
    const dying = spawn(
      AGENT_EXE,
      [
        "run",
        "--hostname",
        "stall-2",
        "--keyring",
        fleet.keyringPath,
        "--heartbeat-interval",
        "300",
        ...flags,
      ],
      { env: {}, stdio: "ignore" },
    );
    children.push(dying);
    await eventually(async () =>
      (await fleet.api.listAgents('hostname ~ "^stall-"')).length === 2 ? true : undefined,
    );
    dying.kill("SIGKILL");
    await new Promise((r) => dying.once("exit", r));
    // Still online for the coordinator: its last heartbeat is a second old.
    const started = Date.now();
    const r = await dragnet([
      "--home",
      home,
      "file",
      "-t",
      'hostname ~ "^stall-"',
      "--path",
      "/etc/hostname",
    ]);
    const took = Date.now() - started;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/stall-1 .*\/etc\/hostname/);
    expect(r.stderr).toMatch(
      /1 not answering for 10s: stall-2 — their answers are still taken: dragnet action follow \w+/,
    );
    // The action's own timeout is 60 s and it expires in 10 minutes: the sweep returned after the 10 s of silence.
    expect(took).toBeGreaterThan(9_000);
    expect(took).toBeLessThan(30_000);
    // --deadline: however things stand.
    const d0 = Date.now();
    const only = await dragnet([
      "--home",
      home,
      "file",
      "-t",
      'hostname == "stall-2"',
      "--path",
      "/etc/hostname",
      "--deadline",
      "2s",
      "--wait-offline",
    ]);
    expect(only.code).toBe(2);
    expect(only.stderr).toMatch(/1 not answering at the deadline: stall-2/);
    expect(Date.now() - d0).toBeLessThan(9_000);
  }, 90_000);
});
