import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { chainAudit } from "../../common/audit-chain.js";
import { SqliteStore } from "../../coordinator/mod.js";
import { emptyWriteBatch } from "../../coordinator/store/store.js";
import { ActionState, CommandStatus } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

describe("SQLite store", () => {
  it("creates its schema, reopens it, and refuses a database from a newer coordinator", async () => {
    const file = join(tempDir(), "c.db");
    const store = new SqliteStore(file);
    await store.apply({
      agents: [],
      actions: [
        {
          id: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          name: "n",
          target: "all",
          signed: Buffer.from([1, 2, 3]),
          signerKeyIds: ["k"],
          signerNames: ["alice"],
          modules: ["file"],
          incidentId: "",
          createdAtMs: 1,
          validFromMs: 1,
          expiresAtMs: 2,
          submittedAtMs: 1,
          timeoutMs: 1000,
          state: ActionState.ACTION_STATE_RELEASED,
          weight: 1,
          requiredWeight: 0,
        },
      ],
      commands: [
        {
          id: "c1",
          actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          agentId: "a1",
          status: CommandStatus.COMMAND_STATUS_PENDING,
          problemCode: "",
          problemMessage: "",
          found: false,
          createdAtMs: 1,
          sentAtMs: 0,
          ackedAtMs: 0,
          updatedAtMs: 1,
        },
      ],
      results: [
        {
          commandId: "c1",
          actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          agentId: "a1",
          found: true,
          payload: Buffer.from([9]),
          receivedAtMs: 5,
        },
        // The same result again (a redelivery) is stored once.
        {
          commandId: "c1",
          actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
          agentId: "a1",
          found: true,
          payload: Buffer.from([9]),
          receivedAtMs: 6,
        },
      ],
      completed: [],
      audit: [
        chainAudit(
          {
            atMs: 7,
            actor: "alice",
            event: "SubmitAction",
            actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
            agentId: "",
            code: "",
            message: "1 agents targeted",
          },
          "main",
          undefined,
          generateKeyPairSync("ed25519").privateKey,
        ),
      ],
      alerts: [],
      evidence: [],
    });
    await store.close();
    const again = new SqliteStore(file);
    expect((await again.getAction("01m8aaaaaaaaaaaaaaaaaaaaaa"))?.signerNames).toEqual(["alice"]);
    expect((await again.resultsOf("01m8aaaaaaaaaaaaaaaaaaaaaa")).map((r) => r.receivedAtMs)).toEqual([5]);
    expect(await again.actionIdsByPrefix("01m8a", 5)).toEqual(["01m8aaaaaaaaaaaaaaaaaaaaaa"]);
    expect(await again.actionIdsByPrefix("01m8b", 5)).toEqual([]);
    expect(await again.matchedAgents("01m8aaaaaaaaaaaaaaaaaaaaaa")).toEqual(["a1"]);
    expect((await again.listAudit(10, "01m8aaaaaaaaaaaaaaaaaaaaaa")).map((e) => [e.actor, e.event])).toEqual([
      ["alice", "SubmitAction"],
    ]);
    expect(await again.listAudit(10, "01m8bbbbbbbbbbbbbbbbbbbbbb")).toEqual([]);
    await again.close();
    const raw = new Database(file);
    raw.pragma("user_version = 99");
    raw.close();
    expect(() => new SqliteStore(file)).toThrow(/newer than this coordinator/);
  });

  it("keeps an action pending approval until it is written again as released", async () => {
    const store = new SqliteStore(join(tempDir(), "c.db"));
    const pending = {
      id: "01m8pppppppppppppppppppppp",
      name: "isolate",
      target: "all",
      signed: Buffer.from([1]),
      signerKeyIds: ["k1"],
      signerNames: ["alice"],
      modules: ["isolate"],
      incidentId: "",
      createdAtMs: 1,
      validFromMs: 1,
      expiresAtMs: 99,
      submittedAtMs: 1,
      timeoutMs: 1000,
      state: ActionState.ACTION_STATE_PENDING_APPROVAL,
      weight: 1,
      requiredWeight: 2,
    };
    const empty = emptyWriteBatch();
    await store.apply({ ...empty, actions: [pending] });
    expect((await store.pendingActions()).map((a) => [a.id, a.weight, a.requiredWeight])).toEqual([
      [pending.id, 1, 2],
    ]);
    expect((await store.listActions(10, true)).map((a) => a.id)).toEqual([pending.id]);
    await store.apply({
      ...empty,
      actions: [
        {
          ...pending,
          state: ActionState.ACTION_STATE_RELEASED,
          weight: 2,
          signerKeyIds: ["k1", "k2"],
          signerNames: ["alice", "bob"],
        },
      ],
    });
    expect(await store.pendingActions()).toEqual([]);
    expect(await store.listActions(10, true)).toEqual([]);
    const released = (await store.getAction(pending.id))!;
    expect([released.state, released.weight, released.signerNames]).toEqual([
      ActionState.ACTION_STATE_RELEASED,
      2,
      ["alice", "bob"],
    ]);
    expect((await store.listActions(10)).length).toBe(1);
    await store.close();
  });

  it("stores an alert once per agent and id, and pages alerts by sequence both ways", async () => {
    const store = new SqliteStore(join(tempDir(), "alerts.db"));
    const empty = emptyWriteBatch();
    const alert = (id: string, agentId: string, receivedAtMs: number) => ({
      id,
      agentId,
      atMs: receivedAtMs - 1,
      receivedAtMs,
      payload: Buffer.from(`${agentId}/${id}`),
    });
    await store.apply({ ...empty, alerts: [alert("x1", "a1", 100), alert("x2", "a1", 200)] });
    // A resent alert is stored once; another agent may use the same id (it cannot suppress a1's).
    await store.apply({ ...empty, alerts: [alert("x2", "a1", 250), alert("x2", "a2", 300)] });
    const all = await store.alertsAfter(0, 10);
    expect(all.map((r) => [r.agentId, r.id, r.receivedAtMs, Buffer.from(r.payload).toString()])).toEqual([
      ["a1", "x1", 100, "a1/x1"],
      ["a1", "x2", 200, "a1/x2"],
      ["a2", "x2", 300, "a2/x2"],
    ]);
    // Sequence numbers only grow (an ignored duplicate may leave a gap: they are cursors, not counts).
    const [s1, s2, s3] = all.map((r) => r.seq) as [number, number, number];
    expect(s1 < s2 && s2 < s3).toBe(true);
    expect((await store.alertsAfter(s2, 10)).map((r) => r.seq)).toEqual([s3]);
    expect((await store.alertsAfter(0, 1)).map((r) => r.seq)).toEqual([s1]);
    expect((await store.alertsBefore(Number.MAX_SAFE_INTEGER, 0, 10)).map((r) => r.seq)).toEqual([
      s3,
      s2,
      s1,
    ]);
    expect((await store.alertsBefore(s3, 150, 10)).map((r) => r.seq)).toEqual([s2]);
    await store.close();
  });
});
