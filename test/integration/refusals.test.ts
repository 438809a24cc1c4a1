import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import { Codes, generateInvestigatorKey, signAction } from "../../common/mod.js";
import { AckStatus, CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { envelope, refusal, sendDirect as sendDirectTo } from "../helpers/direct.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// Refusals, on both sides: the coordinator refuses early and says why; an
// agent refuses on its own even when a command reaches it straight over NATS,
// past the coordinator, and keeps running.

let fleet: TestFleet;
let nc: NatsConnection;
let agentId: string;
const mallory = generateInvestigatorKey("mallory");

beforeAll(async () => {
  fleet = await startFleet({ agents: 1 });
  agentId = fleet.agents[0]!.id;
  await eventually(async () => ((await fleet.api.listAgents()).length === 1 ? true : undefined));
  // A compromised coordinator: its NATS credentials may publish any agent's commands.
  nc = await fleet.connectNats("coordinator");
});

afterAll(async () => {
  await nc?.close();
  await fleet?.stop();
});

const sendDirect = (payload: Uint8Array, waitMs?: number) => sendDirectTo(nc, agentId, payload, waitMs);

describe("the coordinator refuses on submit, with a reason", () => {
  it("an action signed by an unknown key", async () => {
    const err = await refusal(
      fleet.api.submitAction(signAction(fileAction({ names: ["^passwd$"] }), mallory)),
    );
    expect(err.code).toBe(Codes.SIG_UNKNOWN_KEY);
    expect(err.message).toContain(mallory.keyId);
    expect(err.message).toMatch(/not in this keyring/);
  });

  it("an expired action", async () => {
    const now = Date.now();
    const body = fileAction(
      { names: ["^passwd$"] },
      { validFromMs: now - 120_000, expiresAtMs: now - 60_000 },
    );
    const err = await refusal(fleet.api.submitAction(signAction(body, fleet.alice)));
    expect(err.code).toBe(Codes.EXPIRED);
  });

  it("a tampered action", async () => {
    const signed = signAction(fileAction({ names: ["^passwd$"] }), fleet.alice);
    signed.body[signed.body.length - 3]! ^= 0x01;
    const err = await refusal(fleet.api.submitAction(signed));
    expect(err.code).toBe(Codes.SIG_INVALID);
  });

  it("a target that does not parse, naming the position", async () => {
    const err = await refusal(
      fleet.api.submitAction(signAction(fileAction({}, { target: "os == linux and (" }), fleet.alice)),
    );
    expect(err.code).toBe(Codes.TARGET_PARSE);
    expect(err.message).toMatch(/position 18/);
  });

  it("a target that selects nobody", async () => {
    const err = await refusal(
      fleet.api.submitAction(signAction(fileAction({}, { target: 'hostname == "nope"' }), fleet.alice)),
    );
    expect(err.code).toBe(Codes.NO_TARGET);
  });

  it("an action id submitted twice", async () => {
    const signed = signAction(
      fileAction({ names: ["^passwd$"], options: { maxDepth: 0, returnHashes: [] } }),
      fleet.alice,
    );
    const first = await fleet.api.submitAction(signed);
    await collectResults(fleet.api, first.actionId);
    const err = await refusal(fleet.api.submitAction(signed));
    expect(err.code).toBe(Codes.ACTION_INVALID);
    expect(err.message).toMatch(/already submitted/);
  });
});

describe("the agent refuses commands published straight on NATS, and runs nothing", () => {
  it("signed by an unknown key", async () => {
    const { ack, results } = await sendDirect(
      envelope(signAction(fileAction({ names: ["^passwd$"] }), mallory)),
    );
    expect(ack.status).toBe(AckStatus.ACK_STATUS_REJECTED);
    expect(ack.problem?.code).toBe(Codes.SIG_UNKNOWN_KEY);
    expect(results).toEqual([]);
  });

  it("expired, or not yet valid", async () => {
    const now = Date.now();
    const expired = fileAction(
      { names: ["^passwd$"] },
      { validFromMs: now - 3_600_000, expiresAtMs: now - 600_000 },
    );
    const r1 = await sendDirect(envelope(signAction(expired, fleet.alice)));
    expect(r1.ack.problem?.code).toBe(Codes.EXPIRED);
    expect(r1.results).toEqual([]);
    const future = fileAction(
      { names: ["^passwd$"] },
      { validFromMs: now + 3_600_000, expiresAtMs: now + 7_200_000 },
    );
    const r2 = await sendDirect(envelope(signAction(future, fleet.alice)));
    expect(r2.ack.problem?.code).toBe(Codes.NOT_YET_VALID);
    expect(r2.results).toEqual([]);
  });

  it("with one bit flipped", async () => {
    const signed = signAction(fileAction({ names: ["^passwd$"] }), fleet.alice);
    signed.body[10]! ^= 0x10;
    const { ack, results } = await sendDirect(envelope(signed));
    expect(ack.problem?.code).toBe(Codes.SIG_INVALID);
    expect(results).toEqual([]);
  });

  it("unsigned", async () => {
    const signed = signAction(fileAction({ names: ["^passwd$"] }), fleet.alice);
    const { ack } = await sendDirect(envelope({ body: signed.body, signatures: [] }));
    expect(ack.problem?.code).toBe(Codes.UNSIGNED);
  });

  it("a replayed action id under a new command id", async () => {
    const signed = signAction(
      fileAction({ names: ["^passwd$"], options: { maxDepth: 0, returnHashes: [] } }),
      fleet.alice,
    );
    const first = await sendDirect(envelope(signed), 1500);
    expect(first.results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    expect(first.acks.filter((a) => a.status === AckStatus.ACK_STATUS_REJECTED)).toEqual([]);
    const again = await sendDirect(envelope(signed));
    expect(again.ack.status).toBe(AckStatus.ACK_STATUS_REJECTED);
    expect(again.ack.problem?.code).toBe(Codes.REPLAY);
    expect(again.results).toEqual([]);
  });

  it("params that fail the module's check, and operations of unknown modules", async () => {
    const bad = await sendDirect(envelope(signAction(fileAction({ names: ["(unclosed"] }), fleet.alice)));
    expect(bad.ack.problem?.code).toBe(Codes.PARAMS);
    expect(bad.ack.problem?.message).toMatch(/does not compile/);
    const unknown = await sendDirect(
      envelope(signAction({ ...fileAction({}), operations: [{ module: undefined }] }, fleet.alice)),
    );
    expect(unknown.ack.problem?.code).toBe(Codes.UNKNOWN_MODULE);
  });

  it("a payload that is not a command at all, and keeps answering afterwards", async () => {
    const valid = envelope(signAction(fileAction({ names: ["^passwd$"] }), fleet.alice));
    const garbage = await sendDirect(valid.subarray(0, valid.length - 20));
    expect(garbage.ack.status).toBe(AckStatus.ACK_STATUS_REJECTED);
    expect(garbage.ack.problem?.code).toBe(Codes.DECODE);
    const body = fileAction({ names: ["^passwd$"], options: { maxDepth: 0, returnHashes: [] } });
    const res = await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, res.actionId);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
  });
});

describe("acknowledgements", () => {
  it("a command running past 250 ms is acknowledged before its result; one answered at once, by its result alone", async () => {
    const slow = await fleet.addAgent({
      hostname: "slow",
      modules: [
        defineModule({
          ...fileModule,
          async run(params, ctx) {
            await new Promise((r) => setTimeout(r, 800));
            return fileModule.run(params, ctx);
          },
        }),
      ],
    });
    const passwd = () =>
      signAction(fileAction({ paths: ["/etc/passwd"], options: { maxDepth: 0 } }), fleet.alice);
    const late = await sendDirectTo(nc, slow.id, envelope(passwd()), 1500);
    expect(late.acks.map((a) => a.status)).toEqual([AckStatus.ACK_STATUS_RECEIVED]);
    expect(late.results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    // The ack came while it ran: its time is before the result's end, at least 250 ms after the start.
    const result = late.results[0]!;
    expect(late.acks[0]!.atMs).toBeLessThan(result.finishedAtMs);
    expect(late.acks[0]!.atMs - result.startedAtMs).toBeGreaterThanOrEqual(200);
    const quick = await sendDirect(envelope(passwd()), 1000);
    expect(quick.results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    expect(quick.acks).toEqual([]);
  });
});
