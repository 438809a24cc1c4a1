import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, loadAgentConfig } from "../../agent/mod.js";
import { Codes, signAction, silentLogger } from "../../common/mod.js";
import { AgentStatus, CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// Agents that are offline when an action is submitted: one comes back in time
// and gets its command; for one that does not, the command ends expired.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet({ heartbeatIntervalMs: 200, offlineAfterMs: 1000 });
});

afterAll(async () => {
  await fleet?.stop();
});

async function agentAt(stateDir: string, hostname: string): Promise<Agent> {
  const { id: _id, ...link } = await fleet.prepareAgent(stateDir);
  return new Agent(
    loadAgentConfig({
      ...link,
      stateDir,
      keyring: fleet.keyringPath,
      hostname,
      heartbeatInterval: 200,
    }),
    { log: silentLogger },
  );
}

async function offline(id: string) {
  await eventually(async () => {
    const a = (await fleet.api.listAgents()).find((x) => x.id === id);
    return a?.status === AgentStatus.AGENT_STATUS_OFFLINE ? true : undefined;
  });
}

describe("offline agents", () => {
  it("get their command when they come back before the action expires", async () => {
    const stateDir = join(fleet.dir, "returning");
    const first = await agentAt(stateDir, "returning");
    await first.start();
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == returning")).length ? true : undefined,
    );
    await first.stop();
    await offline(first.id);

    const body = fileAction({ paths: ["/etc/passwd"] }, { target: "hostname == returning" });
    const res = await fleet.api.submitAction(signAction(body, fleet.alice));
    expect(res).toMatchObject({ targeted: 1, offline: 1 });
    const before = await fleet.api.getAction(body.id, true);
    expect(before.results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_PENDING]);
    expect(before.summary!.counts!.waitingOffline).toBe(1);

    const back = await agentAt(stateDir, "returning");
    await back.start();
    try {
      const { results, done } = await collectResults(fleet.api, body.id);
      expect(back.id).toBe(first.id);
      expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
      expect(done!.counts).toMatchObject({ targeted: 1, success: 1, found: 1, expired: 0 });
    } finally {
      await back.stop();
    }
  });

  it("end expired, with the reason, when they stay away until the action expires", async () => {
    const stays = await agentAt(join(fleet.dir, "away"), "away");
    await stays.start();
    const present = await fleet.addAgent({ hostname: "present" });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == away")).length ? true : undefined,
    );
    await stays.stop();
    await offline(stays.id);

    const now = Date.now();
    const body = fileAction(
      { paths: ["/etc/passwd"] },
      { target: "hostname == away or hostname == present", validFromMs: now - 1000, expiresAtMs: now + 2500 },
    );
    const res = await fleet.api.submitAction(signAction(body, fleet.alice));
    expect(res).toMatchObject({ targeted: 2, offline: 1 });
    const { results, done } = await collectResults(fleet.api, body.id);
    const byHost = Object.fromEntries(results.map((r) => [r.hostname, r]));
    expect(byHost.present!.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    expect(byHost.away!.status).toBe(CommandStatus.COMMAND_STATUS_EXPIRED);
    expect(byHost.away!.problem).toEqual({
      code: Codes.EXPIRED,
      message: "the agent stayed offline until the action expired",
    });
    expect(done!.complete).toBe(true);
    expect(done!.counts).toMatchObject({ targeted: 2, success: 1, expired: 1, pending: 0 });
    expect(present.id).not.toBe(stays.id);
  });
});
