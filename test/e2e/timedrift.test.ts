import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Codes, DEFAULT_COORDINATOR } from "../../common/mod.js";
import { TimeReply, TimeRequest } from "../../proto/api.js";
import { AGENT_EXE, dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// `dragnet timedrift` through the real console, coordinator, NATS and agent
// executable: the agent's clock is the coordinator's (one machine), so the
// offset measured over the real round trip must be within what that round
// trip allows; and the coordinator answers its clock only to a signed request
// that carries nothing.

let fleet: TestFleet;
let home: string;
let agent: ChildProcess;
let agentId: string;

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 0 });
  home = fleet.consoleHome();
  const work = tempDir("dragnet-timedrift-");
  const stateDir = join(work, "state");
  mkdirSync(stateDir, { recursive: true });
  agent = spawn(
    AGENT_EXE,
    [
      "run",
      "--hostname",
      "clock-host",
      "--keyring",
      fleet.keyringPath,
      "--heartbeat-interval",
      "500",
      ...(await fleet.agentExeFlags(stateDir)),
    ],
    { stdio: ["ignore", "ignore", openSync(join(work, "agent.log"), "a")], env: {} },
  );
  agentId = await eventually(async () => (await fleet.api.listAgents())[0]?.id, 20_000);
}, 60_000);

afterAll(async () => {
  if (agent && agent.exitCode === null) {
    const exited = new Promise((resolve) => agent.once("exit", resolve));
    agent.kill("SIGTERM");
    await exited;
  }
  await fleet?.stop();
});

describe("dragnet timedrift", () => {
  it("one clock, measured over the real link: |offset| within half the rtt; the coordinator refuses an oversized or unsigned time request", async () => {
    const r = await dragnet(["--home", home, "--json", "timedrift", "-t", "all", "--max-drift", "500ms"]);
    // Exit 1: nothing found (no clock past 500 ms), and the row is there all the same.
    expect([r.code, r.stderr]).toEqual([1, expect.any(String)]);
    const [row, ...more] = ndjson(r.stdout);
    expect(more).toEqual([]);
    expect(row).toMatchObject({
      agent: { id: agentId, hostname: "clock-host" },
      samples: 5,
      maxDriftMs: 500,
    });
    const [offset, rtt] = [row!.offsetMs as number, row!.rttMs as number];
    expect(rtt).toBeGreaterThan(0);
    // The same clock on both ends: the error is the legs' difference (at most
    // half the round trip) and the coordinator clock's millisecond.
    // (And the agent clock's anchor, which a loaded machine can put a little early.)
    expect(Math.abs(offset)).toBeLessThanOrEqual(rtt / 2 + 2);
    expect(["synchronized", "unsynchronized", "unknown"]).toContain(row!.ntp);

    // The agent's credentials in other hands: they may publish on its time subject, no more than a few bytes.
    const thief = await fleet.stealAgent(agentId);
    const subject = fleet.coordinator.subjects.time(agentId, DEFAULT_COORDINATOR);
    const ask = async (data: Uint8Array, signed = true) =>
      TimeReply.decode(
        (
          await thief.nc.request(subject, data, {
            timeout: 5000,
            ...(signed ? { headers: thief.sign(subject, data) } : {}),
          })
        ).data,
      );
    const before = Date.now();
    const good = await ask(TimeRequest.encode({}).finish());
    expect(good.problem).toBeUndefined();
    expect(good.coordinatorTimeMs).toBeGreaterThanOrEqual(before);
    expect(good.coordinatorTimeMs).toBeLessThanOrEqual(Date.now());
    const big = await ask(new Uint8Array(4096));
    expect([big.coordinatorTimeMs, big.problem?.code]).toEqual([0, Codes.TOO_LARGE]);
    expect(big.problem?.message).toMatch(/time request of 4096 bytes/);
    const unsigned = await ask(new Uint8Array(0), false);
    expect(unsigned.problem?.code).toBe(Codes.AGENT_UNSIGNED);
    // Refusals are the coordinator's record of what agents sent wrong.
    expect(fleet.coordinator.counters().refused).toBeGreaterThanOrEqual(2);
    // A reply subject that is not the agent's own inbox (here: another agent's commands) gets no answer.
    const before2 = fleet.coordinator.counters().refused;
    const request = TimeRequest.encode({}).finish();
    thief.nc.publish(subject, request, {
      reply: "dragnet.cmd.another-agent",
      headers: thief.sign(subject, request),
    });
    await eventually(async () => fleet.coordinator.counters().refused > before2 || undefined);
  }, 60_000);
});
