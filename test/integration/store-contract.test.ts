import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chainAudit, verifyAuditChain } from "../../common/audit-chain.js";
import { genesisHash, sealHead, sealPage, verifyChain } from "../../common/journal.js";
import { PgStore } from "../../coordinator/store/pg-store.js";
import { SqliteStore } from "../../coordinator/store/sqlite-store.js";
import {
  emptyWriteBatch,
  type Store,
  type StoredIncident,
  type WriteBatch,
} from "../../coordinator/store/store.js";
import { ActionState, CommandResult, CommandStatus } from "../../proto/api.js";
import { eventually, tempDir } from "../helpers/fleet.js";
import { type PostgresCluster, startPostgres } from "../helpers/postgres.js";
import {
  storedAction,
  storedAgent,
  storedCommand,
  storedResult,
  storedSchedule,
} from "../helpers/store-fixtures.js";

// One contract, two backends: every test here runs against the SQLite store
// (a file of its own) and the PostgreSQL store (a database of its own in a
// cluster this file starts). What the coordinator relies on must hold for both.

let cluster: PostgresCluster;
let admin: pg.Pool;
let databases = 0;
const opened: Store[] = [];

beforeAll(async () => {
  cluster = await startPostgres();
  admin = new pg.Pool({ connectionString: cluster.url, max: 2 });
  admin.on("error", () => undefined);
}, 60_000);

afterAll(async () => {
  for (const s of opened) await s.close().catch(() => undefined);
  await admin?.end();
  await cluster?.stop();
});

/** A database of its own in the cluster, empty; its URL. */
async function newDatabase(): Promise<string> {
  const name = `contract_${++databases}`;
  await admin.query(`CREATE DATABASE ${name}`);
  return cluster.url.replace(/\/dragnet$/, `/${name}`);
}

const backends: Array<[string, () => Promise<Store>]> = [
  ["SQLite", async () => new SqliteStore(join(tempDir(), "store.db"))],
  ["PostgreSQL", async () => PgStore.open({ url: await newDatabase() }, () => undefined)],
];

const journalKey = generateKeyPairSync("ed25519").privateKey;
const auditKey = generateKeyPairSync("ed25519").privateKey;

function batch(fill: Partial<WriteBatch>): WriteBatch {
  return { ...emptyWriteBatch(), ...fill };
}

/** A notebook page after the incident's head, as the coordinator's notebook seals it. */
function nextPage(incident: StoredIncident, content: string) {
  const page = sealPage(
    {
      incidentId: incident.id,
      atMs: 5_000 + incident.headPages,
      author: "coordinator",
      authorKeyId: "",
      kind: "note",
      content,
      authorSignature: "",
    },
    incident.headPages > 0 ? { seq: incident.headPages, pageHash: incident.headHash } : undefined,
    journalKey,
  );
  return {
    page,
    head: {
      headPages: page.seq,
      headHash: page.pageHash,
      headSeal: sealHead(incident.id, page.seq, page.pageHash, journalKey),
    },
  };
}

describe.each(backends)("the %s store", (_name, open) => {
  let store: Store;
  beforeAll(async () => {
    store = await open();
    opened.push(store);
  }, 30_000);

  it("keeps an action as written, replaces it when written again, and finds it by prefix, state and openness", async () => {
    const pending = storedAction("01maction0pending0000000000", {
      state: ActionState.ACTION_STATE_PENDING_APPROVAL,
      submittedAtMs: 3_000,
      scheduleId: "01mschedule",
      run: 4,
    });
    await store.apply(
      batch({ actions: [pending, storedAction("01maction0done00000000000000", { submittedAtMs: 2_000 })] }),
    );
    expect(await store.getAction(pending.id)).toEqual({ ...pending, completedAtMs: undefined });
    expect((await store.pendingActions()).map((a) => a.id)).toEqual([pending.id]);
    expect((await store.listActions(10, true)).map((a) => a.id)).toEqual([pending.id]);
    // Released now, with a second signature: the row is replaced, not duplicated.
    await store.apply(
      batch({
        actions: [{ ...pending, state: ActionState.ACTION_STATE_RELEASED, signerNames: ["alice", "bob"] }],
      }),
    );
    expect((await store.getAction(pending.id))?.signerNames).toEqual(["alice", "bob"]);
    expect(await store.pendingActions()).toEqual([]);
    expect((await store.listActions(10)).map((a) => a.id)).toEqual([
      pending.id,
      "01maction0done00000000000000",
    ]);
    expect((await store.openActions()).map((a) => a.id).sort()).toEqual(
      [pending.id, "01maction0done00000000000000"].sort(),
    );
    expect(await store.actionIdsByPrefix("01maction0p", 5)).toEqual([pending.id]);
    expect(await store.actionIdsByPrefix("01maction0", 1)).toEqual(["01maction0done00000000000000"]);
    // Completed once: a later completion does not move the time.
    await store.apply(batch({ completed: [{ actionId: pending.id, atMs: 7_000 }] }));
    await store.apply(batch({ completed: [{ actionId: pending.id, atMs: 9_000 }] }));
    expect((await store.getAction(pending.id))?.completedAtMs).toBe(7_000);
    expect((await store.openActions()).map((a) => a.id)).toEqual(["01maction0done00000000000000"]);
    expect(await store.getAction("01mnothing")).toBeUndefined();
  });

  it("stores one result per command, keeps the first, and says which agents found something", async () => {
    const id = "01mresults000000000000000000";
    const commands = ["a1", "a2", "a3"].map((agent) => storedCommand(`${id}-${agent}`, id, agent));
    await store.apply(batch({ actions: [storedAction(id)], commands }));
    await store.apply(
      batch({
        results: [storedResult(`${id}-a1`, id, "a1", { found: true }), storedResult(`${id}-a2`, id, "a2")],
        commands: [
          { ...commands[0]!, status: CommandStatus.COMMAND_STATUS_SUCCESS, found: true, updatedAtMs: 3_000 },
        ],
      }),
    );
    // The same answer again (redelivered, or stored by another coordinator) with different bytes: the first stays.
    await store.apply(
      batch({ results: [storedResult(`${id}-a1`, id, "a1", { payload: Buffer.from("second copy") })] }),
    );
    const results = await store.resultsOf(id);
    expect(results.map((r) => r.commandId).sort()).toEqual([`${id}-a1`, `${id}-a2`]);
    const kept = CommandResult.decode(results.find((r) => r.agentId === "a1")!.payload);
    expect([kept.commandId, kept.found]).toEqual([`${id}-a1`, true]);
    expect(await store.hasResult(`${id}-a1`)).toBe(true);
    expect(await store.hasResult(`${id}-a3`)).toBe(false);
    expect(await store.matchedAgents(id)).toEqual(["a1"]);
    expect((await store.getCommand(`${id}-a1`))?.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    expect((await store.commandsOf(id)).map((c) => c.agentId).sort()).toEqual(["a1", "a2", "a3"]);
  });

  it("keeps agents, and forgets a revoked one for good", async () => {
    await store.apply(
      batch({ agents: [storedAgent("ag-1"), storedAgent("ag-2", { isolated: true, tags: {} })] }),
    );
    await store.apply(
      batch({ agents: [storedAgent("ag-1", { lastSeenMs: 9_000, addresses: ["10.0.0.9"] })] }),
    );
    const agents = new Map((await store.loadAgents()).map((a) => [a.id, a]));
    expect(agents.get("ag-1")).toEqual(storedAgent("ag-1", { lastSeenMs: 9_000, addresses: ["10.0.0.9"] }));
    expect(agents.get("ag-2")?.isolated).toBe(true);
    expect(await store.revokeAgent("ag-2", 10_000, "alice", "stolen")).toBe(true);
    expect(await store.revokeAgent("ag-2", 11_000, "alice", "again")).toBe(false);
    expect(await store.revokedAgents()).toEqual(["ag-2"]);
    expect((await store.loadAgents()).map((a) => a.id)).toEqual(["ag-1"]);
  });

  it("chains audit entries per coordinator and lists them newest first", async () => {
    const chain = (name: string, count: number) => {
      const out: WriteBatch["audit"] = [];
      let head: { n: number; hash: string } | undefined;
      for (let i = 0; i < count; i++) {
        const e = chainAudit(
          {
            atMs: 100 + i,
            actor: name,
            event: `event ${i}`,
            actionId: i === 0 ? "01mx" : "",
            agentId: "",
            code: "",
            message: "",
          },
          name,
          head,
          auditKey,
        );
        out.push(e);
        head = e.head;
      }
      return out;
    };
    const a = chain("coordinator-a", 3);
    const b = chain("coordinator-b", 2);
    await store.apply(batch({ audit: [a[0]!, b[0]!, a[1]!] }));
    await store.apply(batch({ audit: [b[1]!, a[2]!] }));
    expect(await store.auditChains()).toEqual(["coordinator-a", "coordinator-b"]);
    expect(await store.auditHead("coordinator-a")).toEqual(a[2]!.head);
    const read = await store.auditChain("coordinator-a");
    expect([read.head, read.entries.map((e) => e.n)]).toEqual([a[2]!.head, [1, 2, 3]]);
    expect((await store.listAudit(2)).map((e) => [e.actor, e.event])).toEqual([
      ["coordinator-a", "event 2"],
      ["coordinator-b", "event 1"],
    ]);
    expect((await store.listAudit(10, "01mx")).map((e) => e.actor).sort()).toEqual([
      "coordinator-a",
      "coordinator-b",
    ]);
    expect(await store.unchainedAudit()).toEqual([]);
  });

  it("stores an alert once per agent and id, and pages alerts by sequence both ways", async () => {
    const alert = (agentId: string, id: string, at: number) => ({
      id,
      agentId,
      atMs: at,
      receivedAtMs: at,
      payload: Buffer.from(`${agentId}/${id}`),
    });
    await store.apply(batch({ alerts: [alert("a1", "x", 1_000), alert("a2", "x", 1_001)] }));
    await store.apply(batch({ alerts: [alert("a1", "x", 1_002), alert("a1", "y", 1_003)] }));
    const all = await store.alertsAfter(0, 10);
    expect(all.map((a) => `${a.agentId}/${a.id}`)).toEqual(["a1/x", "a2/x", "a1/y"]);
    expect(all[0]!.seq).toBeLessThan(all[1]!.seq);
    expect((await store.alertsAfter(all[0]!.seq, 1)).map((a) => a.id)).toEqual(["x"]);
    expect((await store.alertsBefore(all[2]!.seq, 0, 10)).map((a) => a.agentId)).toEqual(["a2", "a1"]);
    expect(await store.alertsBefore(all[2]!.seq, 1_001, 10)).toHaveLength(1);
  });

  it("counts a token's uses in one transaction, and records nothing when admission is refused", async () => {
    const token = {
      id: "tok-1",
      secretSha256: "ab".repeat(32),
      tags: { site: "lab" },
      uses: 1,
      used: 0,
      expiresAtMs: 99_000,
      createdAtMs: 1_000,
      createdBy: "alice",
    };
    await store.putEnrollmentToken(token);
    expect(await store.getEnrollmentToken("tok-1")).toEqual(token);
    const enrol = (agentId: string) =>
      store.enrollAgent(
        { agentId, publicKey: `U${agentId}`, tokenId: "tok-1", hostname: agentId, enrolledAtMs: 2_000 },
        (t, earlier) => {
          if (!t) throw new Error("no such token");
          if (earlier) return false;
          if (t.used >= t.uses) throw new Error("token used up");
          return true;
        },
      );
    expect((await enrol("ag-a")).used).toBe(1);
    await expect(enrol("ag-b")).rejects.toThrow("token used up");
    expect(await store.enrolledKey("ag-b")).toBeUndefined();
    expect(await store.enrolledKey("ag-a")).toBe("Uag-a");
    // The same agent again (a re-install) does not count a use.
    expect((await enrol("ag-a")).used).toBe(1);
    expect(await store.revokeEnrollmentToken("tok-1", 3_000)).toBe(true);
    expect(await store.revokeEnrollmentToken("tok-1", 4_000)).toBe(false);
    expect((await store.listEnrollmentTokens(5))[0]?.revokedAtMs).toBe(3_000);
  });

  it("appends notebook pages one after another from the head, even when many write at once", async () => {
    const incident: StoredIncident = {
      id: "01mincident0000000000000000",
      title: "webshell",
      severity: "high",
      phase: "triage",
      openedAtMs: 1_000,
      openedBy: "alice",
      headPages: 0,
      headHash: genesisHash("01mincident0000000000000000"),
      headSeal: sealHead(
        "01mincident0000000000000000",
        0,
        genesisHash("01mincident0000000000000000"),
        journalKey,
      ),
    };
    await store.putIncident(incident);
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        store.appendPage(incident.id, (now) => nextPage(now, `note ${i}`)),
      ),
    );
    const phased = await store.appendPage(incident.id, (now) => ({
      ...nextPage(now, "contained"),
      phase: "contain",
    }));
    expect(phased.seq).toBe(13);
    const pages = await store.pagesOf(incident.id);
    expect(pages.map((p) => p.seq)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    const head = (await store.getIncident(incident.id))!;
    expect(head.phase).toBe("contain");
    expect(
      verifyChain(
        incident.id,
        pages,
        { pages: head.headPages, lastHash: head.headHash, seal: head.headSeal },
        { journal: createPublicKey(journalKey), investigator: () => undefined },
      ),
    ).toMatchObject({ ok: true, pages: 13 });
    await expect(store.appendPage("01mnosuch", (now) => nextPage(now, "x"))).rejects.toThrow(/01mnosuch/);
    expect(await store.incidentIdsByPrefix("01minc", 5)).toEqual([incident.id]);
    expect((await store.listIncidents(5)).map((i) => i.id)).toEqual([incident.id]);
    // A second notebook: export sinks read both in the order written, each page by its own number.
    const other = { ...incident, id: "01mincident0000000000000001" };
    await store.putIncident(other);
    await store.appendPage(other.id, (now) => nextPage(now, "second notebook"));
    const exported = await store.exportLog.read("notebook", 0, 100);
    expect(exported.map((r) => r.record.id)).toEqual([
      ...Array.from({ length: 13 }, (_, i) => `notebook:${incident.id}:${i + 1}`),
      `notebook:${other.id}:1`,
    ]);
    expect(exported.map((r) => r.seq)).toEqual([...exported.map((r) => r.seq)].sort((x, y) => x - y));
    expect(await store.exportLog.read("notebook", exported[12]!.seq, 100)).toHaveLength(1);
  });

  it("keeps evidence once per id, newest first, by incident", async () => {
    const item = (id: string, incidentId: string, at: number) => ({
      id,
      agentId: "a1",
      incidentId,
      receivedAtMs: at,
      payload: Buffer.from(id),
    });
    await store.apply(batch({ evidence: [item("ev-1", "inc-1", 1_000), item("ev-2", "inc-2", 2_000)] }));
    await store.apply(batch({ evidence: [item("ev-1", "inc-9", 3_000), item("ev-3", "inc-1", 4_000)] }));
    expect((await store.listEvidence("", 10)).map((e) => e.id)).toEqual(["ev-3", "ev-2", "ev-1"]);
    expect((await store.listEvidence("inc-1", 10)).map((e) => e.id)).toEqual(["ev-3", "ev-1"]);
    expect((await store.getEvidence("ev-1"))?.incidentId).toBe("inc-1");
    expect(await store.evidenceIdsByPrefix("ev-", 2)).toEqual(["ev-1", "ev-2"]);
  });

  it("claims each schedule run once however many ask at once, and keeps each host's latest rows", async () => {
    const s = storedSchedule("01mschedule00000000000000");
    await store.schedules.put(s);
    const claims = await Promise.all(
      Array.from({ length: 6 }, () =>
        store.schedules.claimRun({
          scheduleId: s.id,
          run: 1,
          actionId: "01mrun1",
          issuedAtMs: 10_000,
          targeted: 3,
          compared: 0,
          baselines: 0,
          changed: 0,
          added: 0,
          vanished: 0,
          failed: 0,
        }),
      ),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect((await store.schedules.get(s.id))?.lastRun).toBe(1);
    await store.schedules.recordAnswer(s.id, "a1", 1, ["row-a"], { baselines: 1 });
    await store.schedules.recordAnswer(s.id, "a2", 1, undefined, { failed: 1 });
    expect(await store.schedules.lastRows(s.id, "a1")).toEqual({ run: 1, rows: ["row-a"] });
    expect(await store.schedules.lastRows(s.id, "a2")).toBeUndefined();
    expect(await store.schedules.run(s.id, 1)).toMatchObject({ targeted: 3, baselines: 1, failed: 1 });
    expect(await store.schedules.stop(s.id, 20_000, "bob", "done", Buffer.from([7]))).toBe(true);
    expect(await store.schedules.stop(s.id, 21_000, "bob", "again", Buffer.from([8]))).toBe(false);
    expect(await store.schedules.active(15_000)).toEqual([]);
    expect((await store.schedules.stoppedUntil(15_000)).map((x) => x.id)).toEqual([s.id]);
    expect(await store.schedules.idsByPrefix("01msched", 3)).toEqual([s.id]);
  });

  it("hands export sinks every record in the order stored, and keeps each sink's cursor moving forward only", async () => {
    const from = await store.exportLog.latest("results");
    const id = "01mexport0000000000000000";
    const commands = Array.from({ length: 5 }, (_, i) => storedCommand(`${id}-${i}`, id, `e${i}`));
    await store.apply(batch({ actions: [storedAction(id)], commands }));
    await store.apply(batch({ results: commands.map((c) => storedResult(c.id, id, c.agentId)) }));
    const read = await store.exportLog.read("results", from, 3);
    expect(read.map((r) => r.record.id)).toEqual([0, 1, 2].map((i) => `result:${id}-${i}`));
    expect((await store.exportLog.read("results", read[2]!.seq, 10)).map((r) => r.record.agentId)).toEqual([
      "e3",
      "e4",
    ]);
    expect(await store.exportLog.latest("results")).toBeGreaterThan(read[2]!.seq);
    await store.exportLog.saveCursor("siem", "results", read[2]!.seq);
    await store.exportLog.saveCursor("siem", "results", read[0]!.seq);
    expect(await store.exportLog.cursor("siem", "results")).toBe(read[2]!.seq);
    expect(await store.exportLog.cursor("other", "results")).toBe(0);
  });
});

describe("several coordinators on one PostgreSQL store", () => {
  it("store each result once when all of them write the same answers at once", async () => {
    const url = await newDatabase();
    // Three coordinators starting together: the schema is made once (the migration lock), each store opens.
    const stores = await Promise.all([1, 2, 3].map(() => PgStore.open({ url }, () => undefined)));
    opened.push(...stores);
    const id = "01mshared0000000000000000";
    const commands = Array.from({ length: 300 }, (_, i) => storedCommand(`${id}-${i}`, id, `ag-${i}`));
    await stores[0]!.apply(batch({ actions: [storedAction(id)], commands }));
    const answers = commands.map((c) => storedResult(c.id, id, c.agentId));
    await Promise.all(
      stores.flatMap((s, k) =>
        [0, 1, 2].map((part) =>
          s.apply(batch({ results: answers.filter((_, i) => i % 3 === (part + k) % 3) })),
        ),
      ),
    );
    expect(await stores[1]!.resultsOf(id)).toHaveLength(300);
    const exported = await stores[2]!.exportLog.read("results", 0, 1_000);
    expect(new Set(exported.map((r) => r.record.id)).size).toBe(300);
    expect(exported).toHaveLength(300);
  });

  it("read a chain whole, as of one instant, while its coordinator appends to it", async () => {
    const url = await newDatabase();
    const [writer, reader] = await Promise.all([1, 2].map(() => PgStore.open({ url }, () => undefined)));
    opened.push(writer!, reader!);
    const publicKey = createPublicKey(auditKey);
    let head: { n: number; hash: string } | undefined;
    let writing = true;
    const appending = (async () => {
      for (let i = 0; i < 200; i++) {
        const fields = {
          atMs: i,
          actor: "a",
          event: `event ${i}`,
          actionId: "",
          agentId: "",
          code: "",
          message: "",
        };
        const e = chainAudit(fields, "coordinator-a", head, auditKey);
        head = e.head;
        await writer!.apply(batch({ audit: [e] }));
      }
      writing = false;
    })();
    // Head and entries read apart would now and then see an entry the head does not seal yet.
    const verdicts = [];
    while (writing) {
      const { head: read, entries } = await reader!.auditChain("coordinator-a");
      verdicts.push(verifyAuditChain("coordinator-a", entries, read, publicKey));
    }
    await appending;
    expect(verdicts.length).toBeGreaterThan(10);
    expect(verdicts.filter((v) => !v.ok)).toEqual([]);
    const last = await reader!.auditChain("coordinator-a");
    expect(verifyAuditChain("coordinator-a", last.entries, last.head, publicKey)).toEqual({
      chain: "coordinator-a",
      ok: true,
      entries: 200,
    });
  });

  it("never move a command back from its final state when a cut-off coordinator flushes what it held", async () => {
    const store = await PgStore.open({ url: await newDatabase() }, () => undefined);
    opened.push(store);
    const id = "01mback000000000000000000";
    const sent = storedCommand(`${id}-a1`, id, "a1", {
      status: CommandStatus.COMMAND_STATUS_SENT,
      sentAtMs: 2_000,
    });
    await store.apply(batch({ actions: [storedAction(id)], commands: [sent] }));
    await store.apply(
      batch({ commands: [{ ...sent, status: CommandStatus.COMMAND_STATUS_SUCCESS, found: true }] }),
    );
    await store.apply(
      batch({ commands: [{ ...sent, status: CommandStatus.COMMAND_STATUS_RUNNING, ackedAtMs: 3_000 }] }),
    );
    expect(await store.getCommand(sent.id)).toMatchObject({
      status: CommandStatus.COMMAND_STATUS_SUCCESS,
      found: true,
    });
    // From one final state to another still goes (a late answer after a timeout).
    await store.apply(batch({ commands: [{ ...sent, status: CommandStatus.COMMAND_STATUS_TIMEOUT }] }));
    expect((await store.getCommand(sent.id))?.status).toBe(CommandStatus.COMMAND_STATUS_TIMEOUT);
  });

  it("let one of two changes to an action waiting for approval through two coordinators at once win", async () => {
    const url = await newDatabase();
    const [a, b] = await Promise.all([1, 2].map(() => PgStore.open({ url }, () => undefined)));
    opened.push(a!, b!);
    const id = "01mapprove000000000000000";
    const waiting = storedAction(id, {
      state: ActionState.ACTION_STATE_PENDING_APPROVAL,
      signed: Buffer.from("alice"),
      weight: 1,
      requiredWeight: 2,
    });
    await a!.apply(batch({ actions: [waiting] }));
    // Both read it with alice's signature; one releases it (with bob's), the other expires it.
    const released = {
      ...waiting,
      signed: Buffer.from("alice+bob"),
      state: ActionState.ACTION_STATE_RELEASED,
    };
    const expired = { ...waiting, state: ActionState.ACTION_STATE_UNAPPROVED, completedAtMs: 9_000 };
    const won = await Promise.all([
      a!.cluster.swapPending(waiting.signed, released, "a"),
      b!.cluster.swapPending(waiting.signed, expired, ""),
    ]);
    expect(won.filter(Boolean)).toHaveLength(1);
    const after = await b!.getAction(id);
    expect(after?.state).toBe(
      won[0] ? ActionState.ACTION_STATE_RELEASED : ActionState.ACTION_STATE_UNAPPROVED,
    );
    expect(await a!.cluster.ownerOf(id)).toBe(won[0] ? "a" : "");
    // What no longer waits, or waits with other signatures, is never changed.
    expect(await a!.cluster.swapPending(waiting.signed, released, "a")).toBe(false);
  });

  it("let an export cursor never pass a record another coordinator has numbered but not yet committed", async () => {
    const url = await newDatabase();
    const [a, b] = await Promise.all([1, 2].map(() => PgStore.open({ url }, () => undefined)));
    opened.push(a!, b!);
    const id = "01mcursor0000000000000000";
    const commands = ["slow", "fast"].map((k) => storedCommand(`${id}-${k}`, id, `ag-${k}`));
    await a!.apply(batch({ actions: [storedAction(id)], commands }));
    // Coordinator A's batch takes its sequence number, then is slow to commit (a trigger sleeps in it).
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query(`
      CREATE FUNCTION slow_commit() RETURNS trigger AS $$
      BEGIN IF NEW.command_id LIKE '%-slow' THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$ LANGUAGE plpgsql;
      CREATE TRIGGER slow AFTER INSERT ON results FOR EACH ROW EXECUTE FUNCTION slow_commit();`);
    const waiting = async (event: string) =>
      (await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event = $1", [event])).rowCount! > 0 ||
      undefined;
    const slow = a!.apply(batch({ results: [storedResult(commands[0]!.id, id, "ag-slow")] }));
    await eventually(() => waiting("PgSleep"));
    // Meanwhile B stores the next answer, and a sink follows by sequence number.
    let fastStored = false;
    const fast = b!.apply(batch({ results: [storedResult(commands[1]!.id, id, "ag-fast")] })).then(() => {
      fastStored = true;
    });
    await eventually(async () => fastStored || (await waiting("advisory")));
    const seen = await a!.exportLog.read("results", 0, 10);
    const cursor = seen.at(-1)?.seq ?? 0;
    await Promise.all([slow, fast]);
    seen.push(...(await a!.exportLog.read("results", cursor, 10)));
    await db.end();
    expect(seen.map((r) => r.record.id).sort()).toEqual([`result:${id}-fast`, `result:${id}-slow`]);
  });
  it("give each open action written before owners were kept to the one coordinator that claims it first", async () => {
    const url = await newDatabase();
    // Written by a store without a coordinator id: as before several coordinators, owner ''.
    const old = await PgStore.open({ url }, () => undefined);
    opened.push(old);
    const ids = Array.from({ length: 40 }, (_, i) => `01mold${String(i).padStart(4, "0")}`);
    await old.apply(
      batch({
        actions: [
          ...ids.map((id) => storedAction(id, { state: ActionState.ACTION_STATE_RELEASED })),
          storedAction("01moldpending", { state: ActionState.ACTION_STATE_PENDING_APPROVAL }),
        ],
      }),
    );
    const [a, b] = await Promise.all(["a", "b"].map((id) => PgStore.open({ url }, () => undefined, id)));
    opened.push(a!, b!);
    const [ofA, ofB] = await Promise.all([a!.cluster.owned("a"), b!.cluster.owned("b")]);
    // Every released one is dispatched by exactly one of them; the one waiting for approval by neither yet.
    expect([...ofA!, ...ofB!].sort()).toEqual(ids);
    expect(ofA!.filter((id) => ofB!.includes(id))).toEqual([]);
    expect(await a!.cluster.ownerOf("01moldpending")).toBe("");
    // Asked again, each gets the same ones: what it claimed is its own now.
    expect((await a!.cluster.owned("a")).sort()).toEqual([...ofA!].sort());
  });

  it("hand a silent coordinator's open actions to exactly one live coordinator, which the silent one then lets go", async () => {
    const url = await newDatabase();
    const [a, b, c] = await Promise.all(
      ["a", "b", "c"].map((id) => PgStore.open({ url }, () => undefined, id)),
    );
    opened.push(a!, b!, c!);
    // Leases are timed by the database's clock (this machine's, here: PostgreSQL runs on it).
    const before = Date.now();
    const dbNow = await a!.cluster.clock();
    expect(dbNow).toBeGreaterThanOrEqual(before - 50);
    expect(dbNow).toBeLessThanOrEqual(Date.now() + 50);
    await a!.cluster.join("a", 1_000, 10_000);
    await b!.cluster.join("b", 1_000, 10_000);
    await c!.cluster.join("c", 1_000, 10_000);
    // A releases two actions and completes one; one waits for approval (nobody dispatches it yet).
    await a!.apply(
      batch({
        actions: [
          storedAction("01mown0open", { state: ActionState.ACTION_STATE_RELEASED }),
          storedAction("01mown0done"),
          storedAction("01mown0pending", { state: ActionState.ACTION_STATE_PENDING_APPROVAL }),
        ],
        completed: [{ actionId: "01mown0done", atMs: 2_000 }],
      }),
    );
    expect(await b!.cluster.ownerOf("01mown0open")).toBe("a");
    // B approves the pending one: it released it, so it dispatches it.
    await b!.apply(
      batch({ actions: [storedAction("01mown0pending", { state: ActionState.ACTION_STATE_RELEASED })] }),
    );
    expect(await a!.cluster.ownerOf("01mown0pending")).toBe("b");
    // A falls silent; B and C renew; both look for the dead at once: one takes A's open action.
    await b!.cluster.renew("b", 9_000, 10_000, []);
    await c!.cluster.renew("c", 9_000, 10_000, []);
    expect(await b!.cluster.alive(12_000)).toEqual(["b", "c"]);
    const claims = await Promise.all([
      b!.cluster.adoptExpired("b", 12_000),
      c!.cluster.adoptExpired("c", 12_000),
    ]);
    const winner = claims.find((x) => x.from.length > 0)!;
    expect(claims.map((x) => x.from.length).sort()).toEqual([0, 1]);
    expect(winner).toMatchObject({ from: ["a"], actions: ["01mown0open"] });
    const adopter = claims[0] === winner ? "b" : "c";
    expect(await a!.cluster.ownerOf("01mown0open")).toBe(adopter);
    expect(await a!.cluster.ownerOf("01mown0done")).toBe("a");
    // A comes back: its renewal tells it which of the actions it held are no longer its own.
    expect(await a!.cluster.renew("a", 13_000, 10_000, ["01mown0open"])).toEqual(["01mown0open"]);
    expect(await b!.cluster.adoptExpired("b", 14_000)).toEqual({ from: [], actions: [] });
    // Its adopter still reads what agents send it; should it fall silent again, it is taken over again.
    expect(await b!.cluster.adoptedBy(adopter)).toEqual(["a"]);
    await a!.apply(batch({ actions: [storedAction("01mown0later")] }));
    await b!.cluster.renew("b", 35_000, 10_000, []);
    await c!.cluster.renew("c", 35_000, 10_000, []);
    expect(await b!.cluster.adoptExpired(adopter, 40_000)).toEqual({
      from: ["a"],
      actions: ["01mown0later"],
    });
    // A clean stop gives the lease up at once.
    await c!.cluster.leave("c");
    expect(await b!.cluster.alive(14_000)).toEqual(["a", "b"]);
  });
});
