import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { ActionBody, AgentStatus, CommandEnvelope, CommandStatus } from "../../proto/api.js";
import { fileAction } from "../helpers/actions.js";
import { AGENT_EXE, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// Full disks, for real: the coordinator's database and an agent's state
// directory each on a small tmpfs of their own, filled while sweeps run and
// freed again. What must hold: no result lost or stored twice, a submit that
// failed never runs, an agent that cannot write keeps working and says why.

const work = tempDir("dragnet-full-disk-");
const dbDisk = join(work, "db-disk");
const agentDisk = join(work, "agent-disk");
const mounted: string[] = [];
const children = new Map<string, ChildProcess>();
let fleet: TestFleet;
let coordinator: ChildProcess;
let asCoordinator: NatsConnection;
let jsm: JetStreamManager;
/** Every command envelope the coordinator published, as the agents would receive it. */
const sent: Array<{ agent: string; actionId: string }> = [];

function mountTmpfs(dir: string, options: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  mounted.push(dir);
}

/** Fills a file system: its space (a file written until ENOSPC) or its inodes (empty files until ENOSPC). */
function fill(dir: string, what: "space" | "inodes"): void {
  const filler = join(dir, "filler");
  mkdirSync(filler, { recursive: true });
  if (what === "space") {
    try {
      execFileSync("dd", ["if=/dev/zero", `of=${join(filler, "zeros")}`, "bs=64k"], { stdio: "ignore" });
    } catch {
      // dd stops at ENOSPC: the point
    }
    return;
  }
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(filler, String(i)), "");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") return;
      throw err;
    }
  }
}

function free(dir: string): void {
  rmSync(join(dir, "filler"), { recursive: true, force: true });
}

async function startAgent(name: string, stateDir: string): Promise<string> {
  const flags = await fleet.agentExeFlags(stateDir);
  const child = spawn(
    AGENT_EXE,
    ["run", "--hostname", name, "--keyring", fleet.keyringPath, "--heartbeat-interval", "300", ...flags],
    { stdio: ["ignore", "ignore", openSync(join(work, `${name}.log`), "a")], env: {} },
  );
  children.set(name, child);
  return readFileSync(join(stateDir, "agent-id"), "utf8").trim();
}

async function stopAgent(name: string): Promise<void> {
  const child = children.get(name)!;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

async function killCoordinator(): Promise<void> {
  const exited = new Promise((resolve) => coordinator.once("exit", resolve));
  coordinator.kill("SIGKILL");
  await exited;
}

const passwd = () =>
  fileAction(
    { paths: ["/etc/passwd", "/etc/group"], options: { maxDepth: 0, returnHashes: ["sha256"] } },
    { target: 'hostname == "db-1" or hostname == "db-2" or hostname == "db-3"', timeoutMs: 20_000 },
  );

/** Per agent: status and the paths and hashes found, from the coordinator's stored results. */
async function storedAnswers(actionId: string) {
  const detail = await fleet.api.getAction(actionId, true);
  return detail.results
    .map((r) => ({
      agent: r.agentId,
      status: r.status,
      files: (r.result?.operations ?? []).flatMap((op) =>
        op.module?.$case === "file" ? op.module.value.matches.map((m) => `${m.path} ${m.sha256}`) : [],
      ),
    }))
    .sort((a, b) => a.agent.localeCompare(b.agent));
}

async function complete(actionId: string, timeoutMs = 30_000) {
  return eventually(async () => {
    const detail = await fleet.api.getAction(actionId, true).catch(() => undefined);
    return detail?.summary?.complete ? detail : undefined;
  }, timeoutMs);
}

const ids: Record<string, string> = {};

beforeAll(async () => {
  requireBuild();
  mountTmpfs(dbDisk, "size=24m");
  fleet = await startFleet({ agents: 0, database: join(dbDisk, "coordinator.db"), offlineAfterMs: 1500 });
  coordinator = await fleet.spawnCoordinator();
  asCoordinator = await fleet.connectNats("coordinator");
  jsm = await jetstreamManager(asCoordinator, { timeout: 15_000 });
  const spy = await fleet.connectNats({ observe: ["dragnet.cmd.*"] });
  spy.subscribe("dragnet.cmd.*", {
    callback: (err, m) => {
      if (err) throw err;
      const envelope = CommandEnvelope.decode(m.data);
      const body = ActionBody.decode(envelope.action?.body ?? new Uint8Array());
      sent.push({ agent: m.subject.split(".")[2]!, actionId: body.id });
    },
  });
  for (const name of ["db-1", "db-2", "db-3"]) ids[name] = await startAgent(name, join(work, name));
  await eventually(async () => ((await fleet.api.listAgents()).length === 3 ? true : undefined), 20_000);
}, 120_000);

afterAll(async () => {
  for (const c of children.values()) c.kill("SIGKILL");
  try {
    await fleet?.stop();
  } finally {
    // Whatever happened above: no file system of this test stays mounted.
    for (const dir of mounted.reverse()) execFileSync("umount", ["-l", dir]);
    rmSync(work, { recursive: true, force: true });
  }
});

describe("the coordinator's disk full", () => {
  it("loses no result that arrived while it was full, even when the coordinator is killed then; each is stored once", async () => {
    const clean = passwd();
    await fleet.api.submitAction(signAction(clean, fleet.alice));
    await complete(clean.id);
    const expected = await storedAnswers(clean.id);
    expect(expected.map((e) => e.status)).toEqual(Array(3).fill(CommandStatus.COMMAND_STATUS_SUCCESS));
    expect(expected.every((e) => e.files.length === 2)).toBe(true);

    // The agents go away, the action waits for them, the disk fills, they come back and answer.
    for (const name of ["db-1", "db-2", "db-3"]) await stopAgent(name);
    await eventually(async () => {
      const list = await fleet.api.listAgents();
      return list.every((a) => a.status === AgentStatus.AGENT_STATUS_OFFLINE) ? true : undefined;
    }, 20_000);
    const faulted = passwd();
    const submitted = await fleet.api.submitAction(signAction(faulted, fleet.alice));
    expect(submitted).toMatchObject({ targeted: 3, offline: 3 });
    fill(dbDisk, "space");
    for (const name of ["db-1", "db-2", "db-3"]) await startAgent(name, join(work, name));
    // All three answered: their results wait in the stream, unacknowledged (not stored).
    await eventually(
      async () => ((await jsm.streams.info("DRAGNET_RESULTS")).state.messages === 3 ? true : undefined),
      20_000,
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect((await jsm.streams.info("DRAGNET_RESULTS")).state.messages).toBe(3);
    // Killed while full, then space returns.
    await killCoordinator();
    free(dbDisk);
    coordinator = await fleet.spawnCoordinator();
    const detail = await complete(faulted.id);
    expect(detail.results).toHaveLength(3);
    expect(await storedAnswers(faulted.id)).toEqual(expected);
    expect((await jsm.streams.info("DRAGNET_RESULTS")).state.messages).toBe(0);
  }, 120_000);

  it("a submit refused for a full disk is not stored and never sent, even after space returns and a restart", async () => {
    fill(dbDisk, "space");
    const refused = passwd();
    await expect(fleet.api.submitAction(signAction(refused, fleet.alice))).rejects.toThrow(
      /disk is full|SQLITE_FULL/,
    );
    free(dbDisk);
    // The batcher's retry runs, and a restarted coordinator takes up what it stored.
    await new Promise((r) => setTimeout(r, 2000));
    await killCoordinator();
    coordinator = await fleet.spawnCoordinator();
    await new Promise((r) => setTimeout(r, 3000));
    await expect(fleet.api.getAction(refused.id, false)).rejects.toThrow(/no action|not found/i);
    expect(sent.filter((s) => s.actionId === refused.id)).toEqual([]);
    // And the coordinator works on: the same sweep submitted again runs everywhere.
    const again = passwd();
    await fleet.api.submitAction(signAction(again, fleet.alice));
    const done = await complete(again.id);
    expect(done.summary!.counts!.success).toBe(3);
  }, 90_000);
});

describe("an agent's state directory full", () => {
  it("keeps the agent running: results go out from memory, the heartbeat, agents list and log say why", async () => {
    mountTmpfs(agentDisk, "size=8m,nr_inodes=64");
    const stateDir = join(agentDisk, "state");
    const id = await startAgent("db-4", stateDir);
    await eventually(async () => ((await fleet.api.listAgents(`id == "${id}"`)).length ? true : undefined));
    const sweep = async () => {
      const body = fileAction(
        { paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: ["sha256"] } },
        { target: 'hostname == "db-4"' },
      );
      await fleet.api.submitAction(signAction(body, fleet.alice));
      return complete(body.id);
    };
    // Before it ever ran an action, it has no replay record: one it cannot write, it does not run.
    fill(agentDisk, "inodes");
    const refused = await sweep();
    expect(refused.results.map((r) => [r.status, r.problem?.message])).toEqual([
      [
        CommandStatus.COMMAND_STATUS_REJECTED,
        expect.stringMatching(
          /cannot record the action id in its state directory \(ENOSPC\), so it does not run it/,
        ),
      ],
    ]);
    free(agentDisk);
    expect((await sweep()).summary!.counts!.success).toBe(1);
    // Its record exists now: the next action is recorded, run, and its result goes out from memory.
    fill(agentDisk, "inodes");
    const done = await sweep();
    expect(done.results.map((r) => [r.agentId, r.status])).toEqual([
      [id, CommandStatus.COMMAND_STATUS_SUCCESS],
    ]);
    const sha = execFileSync("sha256sum", ["/etc/passwd"], { encoding: "utf8" }).split(" ")[0];
    const matches = done.results[0]!.result!.operations[0]!.module;
    expect(matches?.$case === "file" && matches.value.matches[0]!.sha256).toBe(sha);
    // Said, not silent: the agents list carries the problem while it lasts.
    const [listed] = await eventually(async () => {
      const list = await fleet.api.listAgents(`id == "${id}"`);
      // The status file's problem shows from the heartbeat after the one whose status could not be written.
      return (list[0]?.problems.length ?? 0) >= 2 ? list : undefined;
    });
    expect(listed!.problems.join("\n")).toMatch(/state directory full .*kept in memory/);
    expect(listed!.problems.join("\n")).toMatch(/status file not written \(ENOSPC\)/);
    expect(children.get("db-4")!.exitCode).toBeNull();
    const logged = readFileSync(join(work, "db-4.log"), "utf8")
      .split("\n")
      .filter((l) => l.includes('"level":"error"'))
      .map((l) => JSON.parse(l).msg as string);
    expect(logged).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^state directory full/),
        expect.stringMatching(/^status file not written/),
      ]),
    );
    // Space again: the next heartbeats clear it, and the status file is current.
    free(agentDisk);
    await eventually(async () => {
      const list = await fleet.api.listAgents(`id == "${id}"`);
      return list[0] && list[0].problems.length === 0 ? true : undefined;
    }, 10_000);
    const status = JSON.parse(readFileSync(join(stateDir, "status.json"), "utf8"));
    expect(Date.now() - Date.parse(status.lastHeartbeatAt)).toBeLessThan(5000);
    expect(readdirSync(join(stateDir, "outbox")).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  }, 90_000);
});
