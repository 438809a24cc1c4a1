import type { NatsConnection } from "@nats-io/transport-node";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Codes, coSign, signAction, signBytes } from "../../common/mod.js";
import { AckStatus, ActionState, CommandStatus, SignedAction } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { envelope, refusal, sendDirect } from "../helpers/direct.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// The two-person rule: with an ACL asking weight 2 for the file module (as the
// default ACL does for response modules), one investigator's signature holds
// the action in the coordinator; a second investigator's approval releases
// it. Agents enforce the same ACL on their own, whatever reaches them.

const TWO_PEOPLE = { file: { minWeight: 2 } };

let fleet: TestFleet;
let nc: NatsConnection;

beforeAll(async () => {
  fleet = await startFleet({ agents: 2, acl: TWO_PEOPLE });
  await eventually(async () => ((await fleet.api.listAgents()).length === 2 ? true : undefined));
  nc = await fleet.connectNats("coordinator");
});

afterAll(async () => {
  await fleet?.stop();
});

const passwd = () => fileAction({ paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } });

describe("two-person approval through the coordinator", () => {
  it("holds a one-signature action, refuses the same investigator's approval, releases on a second one", async () => {
    const body = passwd();
    const held = await fleet.api.submitAction(signAction(body, fleet.alice));
    expect(held).toMatchObject({
      actionId: body.id,
      pendingApproval: true,
      weight: 1,
      requiredWeight: 2,
      targeted: 0,
    });

    // Nothing was sent: no command exists for any agent.
    const waiting = await fleet.api.getAction(body.id, true);
    expect(waiting.summary!.state).toBe(ActionState.ACTION_STATE_PENDING_APPROVAL);
    expect(waiting.results).toEqual([]);
    expect((await fleet.api.listActions(10, true)).map((a) => a.id)).toEqual([body.id]);

    // The same investigator approving counts once: refused, with the reason.
    const self = await refusal(
      fleet.api.approveAction(body.id, signBytes(waiting.action!.body, fleet.alice)),
    );
    expect(self.code).toBe(Codes.APPROVAL);
    expect(self.message).toMatch(/alice already signed/);

    // Nor does one investigator approve with another's signature.
    const borrowed = await refusal(
      fleet.api.approveAction(body.id, signBytes(waiting.action!.body, fleet.bob)),
    );
    expect(borrowed.code).toBe(Codes.APPROVAL);
    expect(borrowed.message).toMatch(/signed with the approver's own key/);

    const bob = fleet.apiAs(fleet.bob);
    try {
      // A signature over other bytes does not approve anything.
      const other = await refusal(
        bob.approveAction(body.id, signBytes(Buffer.from("something else"), fleet.bob)),
      );
      expect(other.code).toBe(Codes.SIG_INVALID);
      const released = await bob.approveAction(
        body.id.slice(0, 12),
        signBytes(waiting.action!.body, fleet.bob),
      );
      expect(released).toMatchObject({ actionId: body.id, released: true, weight: 2, targeted: 2 });
      const { results, done } = await collectResults(fleet.api, body.id);
      expect(results.map((r) => r.status)).toEqual([
        CommandStatus.COMMAND_STATUS_SUCCESS,
        CommandStatus.COMMAND_STATUS_SUCCESS,
      ]);
      expect(done!.signerNames).toEqual(["alice", "bob"]);
      expect(done!.state).toBe(ActionState.ACTION_STATE_RELEASED);
      expect(await fleet.api.listActions(10, true)).toEqual([]);

      // Approving once it is out is refused.
      const late = await refusal(bob.approveAction(body.id, signBytes(waiting.action!.body, fleet.bob)));
      expect(late.code).toBe(Codes.APPROVAL);
      expect(late.message).toMatch(/already released/);
    } finally {
      bob.close();
    }

    // Who did what, refusals included, is in the audit log (oldest first here).
    const audit = (await fleet.api.listAudit(50, body.id)).reverse();
    expect(audit.map((e) => [e.actor, e.event, e.code])).toEqual([
      ["alice", "action held for approval", ""],
      ["alice", "SubmitAction", ""],
      ["alice", "GetAction", ""],
      ["alice", "ApproveAction", Codes.APPROVAL],
      ["alice", "ApproveAction", Codes.APPROVAL],
      ["bob", "ApproveAction", Codes.SIG_INVALID],
      ["bob", "action approved and released", ""],
      ["bob", "ApproveAction", ""],
      ["alice", "WatchAction", ""],
      ["bob", "ApproveAction", Codes.APPROVAL],
    ]);
  });

  it("a pending action nobody approves ends unapproved when it expires, never sent", async () => {
    const now = Date.now();
    const body = fileAction({ paths: ["/etc/passwd"] }, { validFromMs: now - 1000, expiresAtMs: now + 1500 });
    expect((await fleet.api.submitAction(signAction(body, fleet.alice))).pendingApproval).toBe(true);
    const summary = await eventually(async () => {
      const s = (await fleet.api.getAction(body.id, true)).summary!;
      return s.state === ActionState.ACTION_STATE_UNAPPROVED ? s : undefined;
    }, 5000);
    expect(summary.complete).toBe(true);
    expect((await fleet.api.getAction(body.id, true)).results).toEqual([]);
    const audit = await fleet.api.listAudit(10, body.id);
    expect(audit.find((e) => e.event === "action expired unapproved")?.code).toBe(Codes.EXPIRED);
  });

  it("survives a coordinator restart, unless someone changed it in the database", async () => {
    const kept = passwd();
    const forged = passwd();
    for (const body of [kept, forged]) await fleet.api.submitAction(signAction(body, fleet.alice));
    await fleet.restartCoordinator((database) => {
      const db = new Database(database);
      // Widen the target the approver would read in the summary.
      db.prepare("UPDATE actions SET target = 'all or true' WHERE id = ?").run(forged.id);
      db.close();
    });
    expect((await fleet.api.listActions(10, true)).map((a) => a.id)).toEqual([kept.id]);
    const closed = (await fleet.api.getAction(forged.id, false)).summary!;
    expect(closed.state).toBe(ActionState.ACTION_STATE_UNAPPROVED);
    const audit = await fleet.api.listAudit(20, forged.id);
    expect(audit.find((e) => e.event.startsWith("stored action no longer verifies"))?.message).toMatch(
      /does not match the signed action/,
    );
    // The one nobody touched can still be approved.
    const bob = fleet.apiAs(fleet.bob);
    try {
      const detail = await bob.getAction(kept.id, false);
      const res = await bob.approveAction(kept.id, signBytes(detail.action!.body, fleet.bob));
      expect(res.released).toBe(true);
    } finally {
      bob.close();
    }
    await collectResults(fleet.api, kept.id);
  });

  it("an action already carrying both signatures is released at once", async () => {
    const body = passwd();
    const res = await fleet.api.submitAction(coSign(signAction(body, fleet.alice), fleet.bob));
    expect(res).toMatchObject({ pendingApproval: false, targeted: 2, weight: 2 });
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.every((r) => r.status === CommandStatus.COMMAND_STATUS_SUCCESS)).toBe(true);
  });
});

describe("agents enforce the ACL themselves", () => {
  it("refuses one investigator's signature, even when the coordinator is bypassed", async () => {
    const agentId = fleet.agents[0]!.id;
    const { ack, results } = await sendDirect(nc, agentId, envelope(signAction(passwd(), fleet.alice)));
    expect(ack.status).toBe(AckStatus.ACK_STATUS_REJECTED);
    expect(ack.problem?.code).toBe(Codes.WEIGHT);
    expect(ack.problem?.message).toMatch(
      /operation 1 \(file\) needs signatures of weight 2; it has 1 \(alice\)/,
    );
    expect(results).toEqual([]);
  });

  it("counts the same key signing twice once, and says so", async () => {
    const agentId = fleet.agents[0]!.id;
    const once = signAction(passwd(), fleet.alice);
    const twice = SignedAction.fromPartial({
      body: once.body,
      signatures: [once.signatures[0]!, once.signatures[0]!],
    });
    const { ack, results } = await sendDirect(nc, agentId, envelope(twice));
    expect(ack.problem?.code).toBe(Codes.WEIGHT);
    expect(ack.problem?.message).toMatch(
      /alice signed more than once, and the same investigator counts once/,
    );
    expect(results).toEqual([]);
  });

  it("runs the same action once it carries two investigators' signatures", async () => {
    const agentId = fleet.agents[0]!.id;
    const signed = coSign(signAction({ ...passwd(), target: `id == "${agentId}"` }, fleet.alice), fleet.bob);
    const { acks, results } = await sendDirect(nc, agentId, envelope(signed), 1500);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    // Answered at once: its result is its acknowledgement (an ack comes only after 250 ms of running).
    const answeredMs = results[0]!.finishedAtMs - results[0]!.startedAtMs;
    if (answeredMs < 200) expect(acks).toEqual([]);
    else expect(acks.map((a) => a.status)).toEqual([AckStatus.ACK_STATUS_RECEIVED]);
  });
});

describe("an approval the coordinator cannot release", () => {
  it("an approval refused at release (the target selects nobody now) leaves the action as it was", async () => {
    const leaving = await fleet.addAgent({ hostname: "leaving" });
    await eventually(async () =>
      (await fleet.api.listAgents('hostname == "leaving"')).length ? true : undefined,
    );
    const body = { ...passwd(), target: 'hostname == "leaving" and seen < 2s' };
    expect((await fleet.api.submitAction(signAction(body, fleet.alice))).pendingApproval).toBe(true);
    await leaving.stop();
    fleet.agents.splice(fleet.agents.indexOf(leaving), 1);
    await new Promise((r) => setTimeout(r, 2500));
    const bob = fleet.apiAs(fleet.bob);
    try {
      const bytes = (await bob.getAction(body.id, false)).action!.body;
      const err = await refusal(bob.approveAction(body.id, signBytes(bytes, fleet.bob)));
      expect(err.code).toBe(Codes.NO_TARGET);
      // Nothing of bob's approval stuck: still one signer, still pending, and bob may approve later.
      const after = (await bob.getAction(body.id, false)).summary!;
      expect([after.state, after.signerNames, after.weight]).toEqual([
        ActionState.ACTION_STATE_PENDING_APPROVAL,
        ["alice"],
        1,
      ]);
      const again = await refusal(bob.approveAction(body.id, signBytes(bytes, fleet.bob)));
      expect(again.code).toBe(Codes.NO_TARGET);
    } finally {
      bob.close();
    }
  });
});

describe("an ACL naming who may sign", () => {
  let only: TestFleet;
  beforeAll(async () => {
    only = await startFleet({ agents: 1, acl: { file: { minWeight: 1, investigators: ["bob"] } } });
  });
  afterAll(async () => {
    await only?.stop();
  });

  it("refuses everyone else on the agent, and the coordinator holds their action for an allowed signer", async () => {
    const direct = await only.connectNats("coordinator");
    const agentId = only.agents[0]!.id;
    const { ack, results } = await sendDirect(direct, agentId, envelope(signAction(passwd(), only.alice)));
    expect(ack.problem?.code).toBe(Codes.NOT_ALLOWED);
    expect(ack.problem?.message).toMatch(/may only be signed by bob; it was signed by alice/);
    expect(results).toEqual([]);

    await eventually(async () => ((await only.api.listAgents()).length === 1 ? true : undefined));
    const res = await only.api.submitAction(signAction(passwd(), only.alice));
    expect(res).toMatchObject({ pendingApproval: true, weight: 0, requiredWeight: 1 });
  });
});

describe("an ACL no set of investigators can satisfy", () => {
  let strict: TestFleet;
  beforeAll(async () => {
    strict = await startFleet({ agents: 1, acl: { file: { minWeight: 3 } } });
    await eventually(async () => ((await strict.api.listAgents()).length === 1 ? true : undefined));
  });
  afterAll(async () => {
    await strict?.stop();
  });

  it("is refused by the coordinator at once instead of waiting forever", async () => {
    const err = await refusal(strict.api.submitAction(signAction(passwd(), strict.alice)));
    expect(err.code).toBe(Codes.WEIGHT);
    expect(err.message).toMatch(
      /file needs signatures of weight 3, and every investigator allowed to sign it together carries 2/,
    );
  });
});
