import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import { Codes, signAction } from "../../common/mod.js";
import { agentProblems } from "../../console/commands/agents.js";
import { CommandEnvelope, CommandStatus, Heartbeat } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// The agent keeps its promises when things go wrong: it reconnects after the
// NATS server goes away and comes back, and a module that does not finish is
// cut off at the action's timeout.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet({ heartbeatIntervalMs: 300 });
});

afterAll(async () => {
  await fleet?.stop();
});

describe("an agent", () => {
  it("reconnects after the NATS server restarts, and answers again", async () => {
    const agent = await fleet.addAgent({ hostname: "reconnecting" });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == reconnecting")).length ? true : undefined,
    );
    await fleet.restartNats(1500);
    const before = Date.now();
    await eventually(async () => {
      const [a] = await fleet.api.listAgents("hostname == reconnecting");
      return a && a.lastSeenMs > before ? true : undefined;
    }, 20_000);
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"` });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
  });

  it("keeps a result produced while NATS is down in its outbox, and delivers it once NATS is back", async () => {
    const slow = defineModule({
      ...fileModule,
      async run(params, ctx) {
        await new Promise((r) => setTimeout(r, 1000));
        return fileModule.run(params, ctx);
      },
    });
    const agent = await fleet.addAgent({ hostname: "outbox", modules: [slow] });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == outbox")).length ? true : undefined,
    );
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"` });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await eventually(async () => {
      const [r] = (await fleet.api.getAction(body.id, true)).results;
      return r?.status === CommandStatus.COMMAND_STATUS_RUNNING ? true : undefined;
    });
    const outbox = join(fleet.dir, `agent-${fleet.agents.indexOf(agent) + 1}`, "outbox");
    // Down for 3 s: the result is produced meanwhile and waits on disk.
    let waited = false;
    const restarted = fleet.restartNats(3000);
    await eventually(() => (readdirSync(outbox).some((f) => f.endsWith(".result")) ? true : undefined), 2500);
    waited = true;
    await restarted;
    const { results } = await collectResults(fleet.api, body.id);
    expect(waited).toBe(true);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    await eventually(() => (readdirSync(outbox).length === 0 ? true : undefined), 5000);
  }, 60_000);

  it("keeps running a command the action's expiry overtakes, and its result counts", async () => {
    // A real file search that takes longer than the action has left before it expires.
    const slow = defineModule({
      ...fileModule,
      run: async (params, ctx) => {
        await new Promise((r) => setTimeout(r, 2500));
        return fileModule.run(params, ctx);
      },
    });
    const agent = await fleet.addAgent({ hostname: "slow", modules: [slow] });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == slow")).length ? true : undefined,
    );
    const now = Date.now();
    const body = fileAction(
      { paths: ["/etc/passwd"] },
      { target: `id == "${agent.id}"`, validFromMs: now - 1000, expiresAtMs: now + 1200, timeoutMs: 10_000 },
    );
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results, done } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    expect(results[0]!.problem).toBeUndefined();
    expect(done!.counts).toMatchObject({ success: 1, timeout: 0, found: 1 });
  });

  it("runs at most two commands at once by default; the others wait their turn and all complete", async () => {
    const spans: Array<{ start: number; end: number }> = [];
    const slow = defineModule({
      ...fileModule,
      run: async (params, ctx) => {
        const span = { start: Date.now(), end: 0 };
        await new Promise((r) => setTimeout(r, 600));
        span.end = Date.now();
        spans.push(span);
        return fileModule.run(params, ctx);
      },
    });
    const agent = await fleet.addAgent({ hostname: "busy", modules: [slow] });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == busy")).length ? true : undefined,
    );
    const bodies = [1, 2, 3, 4, 5].map(() =>
      fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"` }),
    );
    for (const body of bodies) await fleet.api.submitAction(signAction(body, fleet.alice));
    const outcomes = await Promise.all(bodies.map((b) => collectResults(fleet.api, b.id)));
    expect(outcomes.map((o) => o.results.map((r) => r.status))).toEqual(
      bodies.map(() => [CommandStatus.COMMAND_STATUS_SUCCESS]),
    );
    // How many ran at the same time at the busiest moment: two, never more (and not one: they do overlap).
    const events = spans.flatMap((sp) => [
      [sp.start, 1],
      [sp.end, -1],
    ]);
    events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
    let running = 0;
    let busiest = 0;
    for (const [, d] of events) {
      running += d!;
      busiest = Math.max(busiest, running);
    }
    expect([spans.length, busiest]).toEqual([5, 2]);
  });

  it("stops waiting for a module at the action's timeout and reports TIMEOUT", async () => {
    // A file module that never finishes, standing in for a scan that runs too long.
    const stuck = defineModule({ ...fileModule, run: () => new Promise<never>(() => undefined) });
    const agent = await fleet.addAgent({ hostname: "stuck", modules: [stuck] });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == stuck")).length ? true : undefined,
    );
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"`, timeoutMs: 500 });
    const started = Date.now();
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_TIMEOUT]);
    expect(results[0]!.problem?.code).toBe(Codes.TIMEOUT);
    expect(results[0]!.result?.operations[0]?.problem?.code).toBe(Codes.TIMEOUT);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("the coordinator", () => {
  it("sends a command again when a reachable agent did not acknowledge it (the publish was lost)", async () => {
    // An agent that heartbeats but whose command subscription is gone: here,
    // heartbeats published by the test for an agent id nobody serves.
    const id = "01m8deaf000000000000000000";
    const { nc, sign } = await fleet.stealAgent(id);
    const startedAtMs = Date.now();
    const beat = () => {
      const hb = Heartbeat.encode({
        ...Heartbeat.fromPartial({}),
        agentId: id,
        hostname: "deaf",
        os: "linux",
        osRelease: "",
        arch: "x64",
        version: "0.1.0",
        addresses: [],
        tags: {},
        isolated: false,
        startedAtMs,
        sentAtMs: Date.now(),
        intervalMs: 300,
        runningCommands: 0,
      }).finish();
      nc.publish(`dragnet.hb.${id}`, hb, { headers: sign(`dragnet.hb.${id}`, hb) });
    };
    const beating = setInterval(beat, 300);
    beat();
    const sent: Array<{ commandId: string; at: number }> = [];
    nc.subscribe(`dragnet.cmd.${id}`, {
      callback: (_e, m) => {
        sent.push({ commandId: CommandEnvelope.decode(m.data).commandId, at: Date.now() });
      },
    });
    try {
      await eventually(async () =>
        (await fleet.api.listAgents("hostname == deaf")).length ? true : undefined,
      );
      const body = fileAction({ paths: ["/etc/passwd"] }, { target: "hostname == deaf" });
      await fleet.api.submitAction(signAction(body, fleet.alice));
      await eventually(() => (sent.length >= 2 ? true : undefined), 15_000);
      expect(sent[1]!.commandId).toBe(sent[0]!.commandId);
      expect(sent[1]!.at - sent[0]!.at).toBeGreaterThanOrEqual(4500);
    } finally {
      clearInterval(beating);
      await nc.close();
    }
  });
});

describe("commands that wait in an agent's line", () => {
  let small: TestFleet;

  beforeAll(async () => {
    // A short grace, so that the coordinator's own deadline matters within the test.
    small = await startFleet({ heartbeatIntervalMs: 300, resultGraceMs: 500 });
  });

  afterAll(async () => {
    await small?.stop();
  });

  it("are judged from when they start, not from when the agent took them", async () => {
    const slow = defineModule({
      ...fileModule,
      run: async (params, ctx) => {
        await new Promise((r) => setTimeout(r, 1500));
        return fileModule.run(params, ctx);
      },
    });
    const agent = await small.addAgent({ hostname: "queued", modules: [slow] });
    await eventually(async () =>
      (await small.api.listAgents("hostname == queued")).length ? true : undefined,
    );
    // Six commands of 1.5 s, two at a time: the last two start after 3 s, well past
    // their 2 s timeout and 0.5 s grace counted from when the agent took them.
    const bodies = [1, 2, 3, 4, 5, 6].map(() =>
      fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"`, timeoutMs: 2000 }),
    );
    for (const body of bodies) await small.api.submitAction(signAction(body, small.alice));
    const outcomes = await Promise.all(bodies.map((b) => collectResults(small.api, b.id)));
    expect(outcomes.map((o) => o.results.map((r) => r.status))).toEqual(
      bodies.map(() => [CommandStatus.COMMAND_STATUS_SUCCESS]),
    );
  }, 30_000);
});

describe("an agent whose clock is off by minutes", () => {
  it("shows the skew in the agents list, and its refusal names the clock as the cause", async () => {
    const ahead = 5 * 60_000;
    const agent = await fleet.addAgent({ hostname: "skewed", now: () => Date.now() + ahead });
    const [listed] = await eventually(async () => {
      const list = await fleet.api.listAgents('hostname == "skewed"');
      return list.length ? list : undefined;
    });
    // Heartbeats take milliseconds here: what is left is the clocks' difference.
    expect(Math.abs(Number(listed!.clockSkewMs) - ahead)).toBeLessThan(2000);
    expect(agentProblems(listed!)).toEqual([
      expect.stringMatching(/^clock skew: its clock is 5m(\d+s)? ahead of the coordinator's/),
    ]);
    // An action valid for a minute has expired by this host's clock (plus the 60 s it allows).
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"` });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => [r.status, r.problem?.code])).toEqual([
      [CommandStatus.COMMAND_STATUS_REJECTED, Codes.EXPIRED],
    ]);
    expect(results[0]!.problem?.message).toMatch(
      /expired at .*; clock skew: this host's clock is 5m(\d+s)? ahead of the coordinator's — correct it \(NTP\)/,
    );
  });
});
