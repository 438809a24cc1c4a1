import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, signAction } from "../../common/mod.js";
import { AckStatus, CommandAck, CommandResult, CommandStatus, Heartbeat } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { envelope } from "../helpers/direct.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";
import { mutate, rng } from "../helpers/fuzz.js";

// Garbage over real NATS into the coordinator's ingest and an agent's command
// subscription: both refuse it message by message and go on serving.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet({ agents: 1 });
  await eventually(async () => ((await fleet.api.listAgents()).length === 1 ? true : undefined));
});

afterAll(async () => {
  await fleet?.stop();
});

async function stillAnswers(): Promise<void> {
  const body = fileAction(
    { paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } },
    { target: `id == "${fleet.agents[0]!.id}"` },
  );
  await fleet.api.submitAction(signAction(body, fleet.alice));
  const { results } = await collectResults(fleet.api, body.id);
  expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
}

describe("fuzzing over NATS", () => {
  it("the coordinator refuses 1500 random and mutated heartbeats, acks and results, and keeps serving", async () => {
    // A client holding one (made-up) agent's credentials: the most an attacker with stolen creds can do.
    const id = newId();
    const nc = await fleet.connectNats({ agentId: id });
    const r = rng(0xc0de);
    const valid = {
      hb: Heartbeat.encode(
        Heartbeat.fromPartial({
          agentId: id,
          hostname: "fuzz",
          os: "linux",
          version: "0.1.0",
          intervalMs: 1000,
        }),
      ).finish(),
      ack: CommandAck.encode(
        CommandAck.fromPartial({ agentId: id, commandId: newId(), status: AckStatus.ACK_STATUS_REJECTED }),
      ).finish(),
      res: CommandResult.encode(
        CommandResult.fromPartial({
          agentId: id,
          commandId: newId(),
          status: CommandStatus.COMMAND_STATUS_SUCCESS,
        }),
      ).finish(),
    };
    const refusedBefore = fleet.coordinator.counters().refused;
    const kinds = ["hb", "ack", "res"] as const;
    for (let i = 0; i < 1500; i++) {
      const kind = kinds[i % 3]!;
      const data = i % 2 ? r.bytes(r.below(300)) : mutate(valid[kind], r);
      // Acks and results to the coordinator (main), heartbeats to all.
      nc.publish(kind === "hb" ? `dragnet.hb.${id}` : `dragnet.${kind}.${id}.main`, data);
      if (i % 100 === 0) await nc.flush();
    }
    await nc.flush();
    // Most of it is refused (a mutant can still be a well-formed heartbeat of this agent).
    await eventually(
      () => (fleet.coordinator.counters().refused - refusedBefore > 500 ? true : undefined),
      10_000,
    );
    const listed = await fleet.api.listAgents();
    expect(listed.some((a) => a.id === fleet.agents[0]!.id)).toBe(true);
    // No agent was made up under another id than the one whose credentials were used.
    expect(listed.every((a) => a.id === fleet.agents[0]!.id || a.id === id)).toBe(true);
    await stillAnswers();
    await nc.close();
  });

  it("an agent refuses 1000 random and mutated commands, runs none, and keeps answering", async () => {
    const agentId = fleet.agents[0]!.id;
    const nc = await fleet.connectNats("coordinator");
    const acks: CommandAck[] = [];
    const results: CommandResult[] = [];
    nc.subscribe(`dragnet.ack.${agentId}.*`, {
      callback: (_e, m) => {
        acks.push(CommandAck.decode(m.data));
      },
    });
    nc.subscribe(`dragnet.res.${agentId}.*.*`, {
      callback: (_e, m) => {
        results.push(CommandResult.decode(m.data));
      },
    });
    await nc.flush();
    const r = rng(0xa9e7);
    // Expired: even a mutant that keeps its signature intact must not run.
    const now = Date.now();
    const seed = envelope(
      signAction(
        fileAction({ paths: ["/etc/passwd"] }, { validFromMs: now - 120_000, expiresAtMs: now - 61_000 }),
        fleet.alice,
      ),
    );
    for (let i = 0; i < 1000; i++) {
      nc.publish(`dragnet.cmd.${agentId}`, i % 2 ? r.bytes(r.below(400)) : mutate(seed, r));
      if (i % 100 === 0) await nc.flush();
    }
    await nc.flush();
    await eventually(() => (acks.length >= 1000 ? true : undefined), 15_000);
    expect(acks.every((a) => a.status === AckStatus.ACK_STATUS_REJECTED && a.problem?.code)).toBe(true);
    expect(results).toEqual([]);
    await stillAnswers();
    await nc.close();
  });
});
