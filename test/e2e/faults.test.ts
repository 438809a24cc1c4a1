import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Codes, signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { AGENT_EXE, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";
import { recordCommandsSent, slowFileModule } from "../helpers/sweep-faults.js";

// Faults in the middle of a sweep, with real processes: the coordinator
// SIGKILLed and restarted, an agent SIGKILLed while it runs a command. Each
// ends with exact counts: one stored result per agent that ran, none twice.

let fleet: TestFleet;
const AGENTS = 20;
const ran = new Map<string, number>();

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ heartbeatIntervalMs: 500 });
  // A real file search that takes between 0.3 and 1.8 s, counting how often each agent ran it.
  for (let i = 0; i < AGENTS; i++) {
    const hostname = `sweep-${i}`;
    const slow = slowFileModule(hostname, 300 + ((i * 97) % 1500), ran);
    await fleet.addAgent({ hostname, tags: { group: "sweep" }, modules: [slow], heartbeatIntervalMs: 500 });
  }
  await eventually(async () =>
    (await fleet.api.listAgents('tags.group == "sweep"')).length === AGENTS ? true : undefined,
  );
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
});

function storedResults(actionId: string): string[] {
  const db = new Database(join(fleet.dir, "coordinator.db"), { readonly: true });
  try {
    return (
      db.prepare("SELECT agent_id FROM results WHERE action_id = ?").all(actionId) as Array<{
        agent_id: string;
      }>
    ).map((r) => r.agent_id);
  } finally {
    db.close();
  }
}

describe("the coordinator SIGKILLed mid-sweep", () => {
  it("loses no result, stores none twice, and sends nothing again to agents that answered", async () => {
    let coordinator = await fleet.spawnCoordinator();
    const sent = await recordCommandsSent(fleet);

    const body = fileAction(
      { paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } },
      { target: 'tags.group == "sweep"' },
    );
    await fleet.api.submitAction(signAction(body, fleet.alice));
    // Some answers are in, most are still running: kill it.
    await eventually(() => (storedResults(body.id).length >= 3 ? true : undefined), 10_000);
    coordinator.kill("SIGKILL");
    await new Promise<void>((r) => coordinator.once("exit", () => r()));
    const beforeKill = storedResults(body.id).length;
    expect(beforeKill).toBeLessThan(AGENTS);
    // The agents finish while it is down; their results wait in the stream.
    await new Promise((r) => setTimeout(r, 2500));

    const restartedAt = Date.now();
    coordinator = await fleet.spawnCoordinator();
    // A watcher that reconnects sees the final state.
    const { results, done } = await collectResults(fleet.api, body.id);
    expect(results).toHaveLength(AGENTS);
    expect(results.every((r) => r.status === CommandStatus.COMMAND_STATUS_SUCCESS)).toBe(true);
    expect(done!.counts).toMatchObject({
      targeted: AGENTS,
      success: AGENTS,
      found: AGENTS,
      failed: 0,
      timeout: 0,
    });
    const stored = storedResults(body.id);
    expect(stored).toHaveLength(AGENTS);
    expect(new Set(stored).size).toBe(AGENTS);
    // One command per agent, ever; none after the restart; each agent ran the module once.
    expect(sent).toHaveLength(AGENTS);
    expect(new Set(sent.map((s) => s.agent)).size).toBe(AGENTS);
    expect(sent.filter((s) => s.at >= restartedAt)).toEqual([]);
    expect([...ran.values()]).toEqual(Array(AGENTS).fill(1));
    coordinator.kill("SIGTERM");
  }, 60_000);
});

describe("an agent SIGKILLed while it runs a command", () => {
  it("reports the command failed when it comes back, and does not run it again", async () => {
    await fleet.spawnCoordinator();
    const stateDir = join(tempDir(), "state");
    const flags = await fleet.agentExeFlags(stateDir);
    const start = (): ChildProcess =>
      spawn(
        AGENT_EXE,
        [...flags, "--keyring", fleet.keyringPath, "--hostname", "killed", "--heartbeat-interval", "500"],
        { env: {}, stdio: "ignore" },
      );
    let agent = start();
    try {
      await eventually(
        async () => ((await fleet.api.listAgents('hostname == "killed"')).length ? true : undefined),
        15_000,
      );
      // Hashing every file under /usr against a digest nothing has: seconds of work.
      const body = fileAction(
        { paths: ["/usr"], sha256: ["00".repeat(32)], options: { maxDepth: 64, returnHashes: [] } },
        { target: 'hostname == "killed"', timeoutMs: 120_000 },
      );
      await fleet.api.submitAction(signAction(body, fleet.alice));
      await eventually(async () => {
        const [r] = (await fleet.api.getAction(body.id, true)).results;
        return r?.status === CommandStatus.COMMAND_STATUS_RUNNING ? true : undefined;
      }, 15_000);
      agent.kill("SIGKILL");
      await new Promise<void>((r) => agent.once("exit", () => r()));
      const restarted = Date.now();
      agent = start();
      const { results } = await collectResults(fleet.api, body.id);
      expect(results).toHaveLength(1);
      expect(results[0]!.status).toBe(CommandStatus.COMMAND_STATUS_FAILED);
      expect(results[0]!.problem?.code).toBe(Codes.AGENT_LOST);
      expect(results[0]!.problem?.message).toMatch(/stopped while running this command; it is not run again/);
      // Reported on start, not after another full search.
      expect(Date.now() - restarted).toBeLessThan(10_000);
      expect(storedResults(body.id)).toHaveLength(1);
    } finally {
      agent.kill("SIGKILL");
    }
  }, 90_000);
});
