import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent, loadAgentConfig } from "../../agent/mod.js";
import {
  API_AUTH_HEADER,
  apiAuthToken,
  Codes,
  generateInvestigatorKey,
  newId,
  signAction,
  silentLogger,
} from "../../common/mod.js";
import { natsConnectOptions } from "../../common/nats-link.js";
import { CoordinatorGrpcClient } from "../../console/client.js";
import {
  AckStatus,
  Alert,
  CommandResult,
  CommandStatus,
  type CoordinatorClient,
  CoordinatorService,
  Heartbeat,
} from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { envelope, refusal, sendDirect } from "../helpers/direct.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// An attacker's view: stolen agent credentials, a compromised coordinator (its
// NATS credentials, its database), a client without credentials. Each attempt
// is refused with its reason, recorded, and leaves everything running.

let fleet: TestFleet;
let asCoordinator: NatsConnection;
let a: Agent;
let b: Agent;

beforeAll(async () => {
  fleet = await startFleet();
  a = await fleet.addAgent({ hostname: "host-a", tags: { role: "web" } });
  b = await fleet.addAgent({ hostname: "host-b", tags: { role: "db" } });
  await eventually(async () => ((await fleet.api.listAgents()).length === 2 ? true : undefined));
  asCoordinator = await fleet.connectNats("coordinator");
});

afterAll(async () => {
  await fleet?.stop();
});

const passwd = (target = "all") =>
  fileAction({ paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } }, { target });

describe("NATS: one agent's credentials", () => {
  it("cannot read another agent's commands", async () => {
    const stolen = await fleet.connectNats({ agentId: a.id });
    const denied = new Promise<Error>((resolve) => {
      stolen.subscribe(`dragnet.cmd.${b.id}`, {
        callback: (err) => {
          if (err) resolve(err);
        },
      });
    });
    const err = await denied;
    expect(err.message).toMatch(/Permissions Violation for Subscription to "dragnet\.cmd\./);
    // Nor every command at once.
    const wildcard = new Promise<Error>((resolve) => {
      stolen.subscribe("dragnet.cmd.*", {
        callback: (e) => {
          if (e) resolve(e);
        },
      });
    });
    expect((await wildcard).message).toMatch(/Permissions Violation for Subscription/);
    // Its own commands it may read.
    const own = stolen.subscribe(`dragnet.cmd.${a.id}`);
    await stolen.flush();
    expect(own.isClosed()).toBe(false);
    await stolen.close();
  });

  it("cannot publish as another agent: the server drops it, and the coordinator refuses what it signs for another", async () => {
    const { nc: stolen, sign } = await fleet.stealAgent(a.id);
    const errors: string[] = [];
    void (async () => {
      for await (const s of stolen.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    // A listener with the coordinator's rights sees what really reaches the bus.
    const seen: string[] = [];
    const spies = [`dragnet.hb.${b.id}`, `dragnet.res.${b.id}.*.*`].map((subject) =>
      asCoordinator.subscribe(subject, {
        callback: (err, m) => {
          seen.push(err ? `error: ${err.message}` : m.subject);
        },
      }),
    );
    await asCoordinator.flush();
    const before = (await fleet.api.listAgents(`id == "${b.id}"`))[0]!;
    const impostor = Heartbeat.encode({
      ...Heartbeat.fromPartial({}),
      agentId: b.id,
      hostname: "impostor",
      os: "linux",
    }).finish();
    stolen.publish(`dragnet.hb.${b.id}`, impostor, { headers: sign(`dragnet.hb.${b.id}`, impostor) });
    const result = CommandResult.encode(
      CommandResult.fromPartial({
        agentId: b.id,
        commandId: "c1",
        status: CommandStatus.COMMAND_STATUS_SUCCESS,
      }),
    ).finish();
    stolen.publish(`dragnet.res.${b.id}.main.c1`, result);
    await stolen.flush().catch(() => undefined);
    await eventually(() => (errors.length >= 2 ? true : undefined), 3000);
    expect(errors.join("\n")).toMatch(/Permissions Violation for Publish to "dragnet\.hb\./);
    expect(errors.join("\n")).toMatch(/Permissions Violation for Publish to "dragnet\.res\./);
    // On its own subject, signed with its own key, claiming B: refused for the mismatch, put down to A.
    const refusedBefore = fleet.coordinator.counters().refused;
    stolen.publish(`dragnet.hb.${a.id}`, impostor, { headers: sign(`dragnet.hb.${a.id}`, impostor) });
    await eventually(() => (fleet.coordinator.counters().refused > refusedBefore ? true : undefined), 3000);
    await new Promise((r) => setTimeout(r, 300));
    // Whatever reached the bus for B came from B itself (its heartbeats), never the impostor's.
    const after = (await fleet.api.listAgents(`id == "${b.id}"`))[0]!;
    expect(after.hostname).toBe(before.hostname);
    expect(after.hostname).toBe("host-b");
    // The listener works: B's own heartbeat reaches it.
    await eventually(() => (seen.length > 0 ? true : undefined), 3000);
    expect(seen.every((s) => s === `dragnet.hb.${b.id}`)).toBe(true);
    const audit = await fleet.api.listAudit(100);
    expect(audit.find((e) => e.event === "heartbeat refused")).toMatchObject({
      actor: `agent ${a.id}`,
      code: Codes.SUBJECT_MISMATCH,
    });
    for (const spy of spies) spy.unsubscribe();
    await stolen.close();
  });

  it("cannot raise alerts as another agent; malformed alerts are refused, audited and taken out of the stream, good ones stored", async () => {
    const { nc: stolen, sign } = await fleet.stealAgent(a.id);
    const js = jetstream(stolen);
    const alert = (over: Partial<Alert>) =>
      Alert.encode(
        Alert.fromPartial({
          id: newId(),
          agentId: a.id,
          hostname: "host-a",
          atMs: Date.now(),
          source: "drift",
          watch: "etc",
          detectedBy: "notify",
          changes: [{ path: "/etc/shadow", kind: "changed", what: ["content"] }],
          ...over,
        }),
      ).finish();
    const publish = (subject: string, data: Uint8Array, opts: { msgID?: string; signed?: boolean } = {}) =>
      js.publish(subject, data, {
        msgID: opts.msgID,
        timeout: 2000,
        headers: opts.signed === false ? undefined : sign(subject, data),
      });
    // On B's subject: the server refuses the publish outright.
    const forB = alert({ agentId: b.id });
    await expect(publish(`dragnet.alert.${b.id}.${Alert.decode(forB).id}`, forB)).rejects.toThrow();
    // On its own subjects: claiming B; not a protobuf; an id that is not its subject's; unsigned;
    // out of bounds — stored by the stream, refused by the coordinator.
    const refusedBefore = fleet.coordinator.counters().alerts.refused;
    await publish(`dragnet.alert.${a.id}.${Alert.decode(forB).id}`, forB);
    await publish(`dragnet.alert.${a.id}.${newId()}`, new Uint8Array([0xff, 0xff, 0xff]));
    await publish(`dragnet.alert.${a.id}.${newId()}`, alert({}));
    const unsigned = alert({});
    await publish(`dragnet.alert.${a.id}.${Alert.decode(unsigned).id}`, unsigned, { signed: false });
    const long = alert({ watch: "x".repeat(500) });
    await publish(`dragnet.alert.${a.id}.${Alert.decode(long).id}`, long);
    // And a well-formed one of its own, sent twice: stored once.
    const good = alert({});
    const goodId = Alert.decode(good).id;
    await publish(`dragnet.alert.${a.id}.${goodId}`, good, { msgID: `${a.id}.${goodId}` });
    await publish(`dragnet.alert.${a.id}.${goodId}`, good, { msgID: `${a.id}.${goodId}` });
    await eventually(
      () => (fleet.coordinator.counters().alerts.refused - refusedBefore >= 5 ? true : undefined),
      5000,
    );
    const stored = await eventually(async () => {
      const list = await fleet.api.listAlerts("", 0, 100);
      return list.some((s) => s.alert?.id === goodId) ? list : undefined;
    });
    expect(stored.map((s) => [s.alert?.agentId, s.alert?.changes[0]?.path])).toEqual([[a.id, "/etc/shadow"]]);
    // A follower whose cursor lies before it (here 0: the store held no alert when it read the
    // past, as `dragnet alerts --follow` on a quiet fleet) is sent it: 0 is a cursor too.
    const cursor = stored[0]!.seq - 1;
    expect(cursor).toBe(0);
    const followed: string[] = [];
    await fleet.api.watchAlerts(
      "",
      cursor,
      (s) => (followed.push(s.alert?.id ?? ""), false),
      undefined,
      true,
    );
    expect(followed).toEqual([goodId]);
    const audit = await fleet.api.listAudit(200);
    const refusals = audit
      .filter((e) => e.event === "alert refused")
      .map((e) => [e.code, e.agentId, e.actor]);
    expect(refusals).toEqual(
      expect.arrayContaining([
        [Codes.SUBJECT_MISMATCH, a.id, `agent ${a.id}`],
        [Codes.DECODE, a.id, `agent ${a.id}`],
        // Unsigned bytes are nobody's: not put down to the agent whose subject they came on.
        [Codes.AGENT_UNSIGNED, "", "unknown publisher"],
      ]),
    );
    // Refused alerts do not stay in the stream (only the good one does).
    const jsm = await jetstreamManager(asCoordinator);
    await eventually(
      async () => ((await jsm.streams.info("DRAGNET_ALERTS")).state.messages <= 1 ? true : undefined),
      5000,
    );
    await stolen.close();
  });

  it("cannot stall other agents' results by flooding its own result subjects with small junk", async () => {
    // Many tiny results, then a larger real one: a consumer whose pulls are sized by the
    // bytes taken since stalled here for ~30 s (until its heartbeats were missed).
    const { nc: stolen, sign } = await fleet.stealAgent(a.id);
    const refusedBefore = fleet.coordinator.counters().refused;
    const junk = new Uint8Array([0xff]);
    for (let i = 0; i < 1100; i++) {
      const subject = `dragnet.res.${a.id}.main.${newId()}`;
      stolen.publish(subject, junk, { headers: sign(subject, junk) });
      if (i % 100 === 99) await stolen.flush();
    }
    // Then one of nearly 1 MiB (the largest a result may be).
    const big = new Uint8Array(900 * 1024).fill(0xff);
    const bigSubject = `dragnet.res.${a.id}.main.${newId()}`;
    stolen.publish(bigSubject, big, { headers: sign(bigSubject, big) });
    await stolen.flush();
    const sentAt = Date.now();
    await eventually(
      () => (fleet.coordinator.counters().refused - refusedBefore >= 1101 ? true : undefined),
      20_000,
    );
    expect(Date.now() - sentAt).toBeLessThan(8000);
    const body = fileAction(
      { paths: ["/etc"], options: { maxDepth: 1, returnHashes: ["sha256"] } },
      { target: 'hostname == "host-b"' },
    );
    const started = Date.now();
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results, done } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => [r.agentId, r.status])).toEqual([[b.id, CommandStatus.COMMAND_STATUS_SUCCESS]]);
    expect(done?.complete).toBe(true);
    expect(Date.now() - started).toBeLessThan(8000);
    await stolen.close();
  });

  it("anonymous and plaintext clients are not let in", async () => {
    await expect(fleet.connectNats("anonymous")).rejects.toThrow(/Authorization Violation/i);
    // Plaintext is refused even with valid credentials: the server requires TLS.
    const creds = await fleet.natsSecurity.writeAgentCreds(a.id, join(fleet.dir, "plain.creds"));
    const plain = natsConnectOptions({ servers: [fleet.nats.url], creds, insecure: true });
    expect(plain.tls).toBeNull();
    await expect(connect({ ...plain, timeout: 2000 })).rejects.toThrow(/TLS|tls/);
    // The same credentials over TLS are let in.
    const ok = await connect({
      ...natsConnectOptions({ servers: [fleet.nats.url], creds, ca: fleet.caFile, insecure: false }),
      timeout: 2000,
    });
    await ok.close();
  });
});

describe("the API: who is calling", () => {
  let raw: CoordinatorClient;
  beforeAll(() => {
    raw = new CoordinatorGrpcClient(fleet.api.address, grpc.credentials.createSsl(Buffer.from(fleet.caCert)));
  });
  afterAll(() => raw?.close());

  const listAgents = (md: grpc.Metadata) =>
    new Promise<grpc.ServiceError | null>((resolve) =>
      raw.listAgents({ target: "" }, md, (err) => resolve(err)),
    );
  const token = (key = fleet.alice, path: string = CoordinatorService.listAgents.path, at = Date.now()) => {
    const md = new grpc.Metadata();
    md.set(API_AUTH_HEADER, apiAuthToken(key, path, at));
    return md;
  };

  it("refuses a call without credentials, from an unknown key, replayed, stale, or made for another method", async () => {
    const cases: Array<[string, grpc.Metadata, RegExp]> = [
      ["none", new grpc.Metadata(), /no investigator credentials/],
      [
        "unknown key",
        token(generateInvestigatorKey("mallory")),
        /is not an investigator the coordinator knows/,
      ],
      ["stale", token(fleet.alice, CoordinatorService.listAgents.path, Date.now() - 10 * 60_000), /stale/],
      ["other method", token(fleet.alice, CoordinatorService.submitAction.path), /do not verify for/],
    ];
    for (const [what, md, reason] of cases) {
      const err = await listAgents(md);
      expect(err?.code, what).toBe(grpc.status.UNAUTHENTICATED);
      expect(err?.details, what).toMatch(reason);
    }
    const once = token();
    expect(await listAgents(once)).toBeNull();
    const replayed = await listAgents(once);
    expect(replayed?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(replayed?.details).toMatch(/already used/);

    const audit = await fleet.api.listAudit(200);
    const refused = audit.filter((e) => e.code === Codes.UNAUTHENTICATED);
    expect(refused.length).toBeGreaterThanOrEqual(5);
    expect(refused.every((e) => e.actor.startsWith("unauthenticated ") && e.event === "ListAgents")).toBe(
      true,
    );
    // The accepted call is recorded with who made it.
    expect(audit.some((e) => e.actor === "alice" && e.event === "ListAgents")).toBe(true);
  });
});

describe("a compromised coordinator", () => {
  it("cannot widen an action: an agent the signed target excludes refuses it", async () => {
    const signed = signAction(passwd('tags.role == "db"'), fleet.alice);
    const { ack, results } = await sendDirect(asCoordinator, a.id, envelope(signed));
    expect(ack.problem?.code).toBe(Codes.TARGET_MISMATCH);
    expect(ack.problem?.message).toMatch(/does not select this agent \(host-a/);
    expect(results).toEqual([]);
    const negated = await sendDirect(
      asCoordinator,
      a.id,
      envelope(signAction(passwd('not hostname == "host-a"'), fleet.alice)),
    );
    expect(negated.ack.problem?.code).toBe(Codes.TARGET_MISMATCH);
  });

  it("clauses only the coordinator knows (matched, status, seen) do not make an agent refuse", async () => {
    const target = `matched("${newId()}") and status == "online" and seen < 5m and hostname == "host-a"`;
    const { acks, results } = await sendDirect(
      asCoordinator,
      a.id,
      envelope(signAction(passwd(target), fleet.alice)),
      1500,
    );
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    expect(acks.filter((a) => a.status === AckStatus.ACK_STATUS_REJECTED)).toEqual([]);
    // ...but a known clause that excludes it still does.
    const wrong = `matched("${newId()}") and hostname == "host-b"`;
    const refused = await sendDirect(asCoordinator, a.id, envelope(signAction(passwd(wrong), fleet.alice)));
    expect(refused.ack.problem?.code).toBe(Codes.TARGET_MISMATCH);
  });

  it("cannot replay an action to an agent, even after the agent restarts", async () => {
    const stateDir = join(fleet.dir, "restarting");
    const start = async () => {
      const { id: _id, ...link } = await fleet.prepareAgent(stateDir);
      const agent = new Agent(
        loadAgentConfig({
          ...link,
          stateDir,
          keyring: fleet.keyringPath,
          hostname: "restarting",
          heartbeatInterval: 500,
        }),
        { log: silentLogger },
      );
      await agent.start();
      return agent;
    };
    const first = await start();
    const signed = signAction(passwd(), fleet.alice);
    const ran = await sendDirect(asCoordinator, first.id, envelope(signed), 1500);
    expect(ran.results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    await first.stop();
    const second = await start();
    expect(second.id).toBe(first.id);
    const again = await sendDirect(asCoordinator, second.id, envelope(signed));
    expect(again.ack.problem?.code).toBe(Codes.REPLAY);
    expect(again.ack.problem?.message).toMatch(/never run twice/);
    expect(again.results).toEqual([]);
    await second.stop();
  });

  it("cannot send, through its database, an action to an agent it was not meant for", async () => {
    // Signed for host-a only, and run there.
    const body = passwd('hostname == "host-a"');
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.hostname)).toEqual(["host-a"]);

    // The attacker reopens it and adds a command for host-b, and tampers with another action's target.
    const other = passwd('hostname == "host-a"');
    await fleet.api.submitAction(signAction(other, fleet.alice));
    await collectResults(fleet.api, other.id);
    await fleet.restartCoordinator((database) => {
      const db = new Database(database);
      db.prepare("UPDATE actions SET completed_at = NULL WHERE id IN (?, ?)").run(body.id, other.id);
      db.prepare(
        "INSERT INTO commands (id, action_id, agent_id, status, problem_code, problem_message, found, created_at, sent_at, acked_at, updated_at) VALUES (?, ?, ?, 1, '', '', 0, 0, 0, 0, 0)",
      ).run(newId(), body.id, b.id);
      const row = db.prepare("SELECT signed FROM actions WHERE id = ?").get(other.id) as { signed: Buffer };
      const forged = Buffer.from(row.signed);
      const at = forged.indexOf(Buffer.from("host-a"));
      forged.write("host-b", at);
      db.prepare("UPDATE actions SET signed = ? WHERE id = ?").run(forged, other.id);
      db.close();
    });

    // host-b refuses the forged command, and says why; the reason is in the action and the audit log.
    const refusedByB = await eventually(async () => {
      const r = (await fleet.api.getAction(body.id, true)).results.find((x) => x.agentId === b.id);
      return r?.status === CommandStatus.COMMAND_STATUS_REJECTED ? r : undefined;
    });
    expect(refusedByB.problem?.code).toBe(Codes.TARGET_MISMATCH);
    const audit = await fleet.api.listAudit(100, body.id);
    expect(audit.find((e) => e.actor === `agent ${b.id}`)?.code).toBe(Codes.TARGET_MISMATCH);

    // The tampered action is not sent at all: its signature no longer matches.
    const tampered = await fleet.api.listAudit(100, other.id);
    expect(tampered.find((e) => e.event.startsWith("stored action no longer verifies"))?.code).toBe(
      Codes.SIG_INVALID,
    );
    expect((await fleet.api.getAction(other.id, true)).results.map((r) => r.agentId)).toEqual([a.id]);
  });
});

describe("inputs out of bounds", () => {
  it("an action body over the size limit is refused by the coordinator and by the agent", async () => {
    const big = signAction({ ...passwd(), description: "x".repeat(300_000) }, fleet.alice);
    const err = await refusal(fleet.api.submitAction(big));
    expect(err.code).toBe(Codes.TOO_LARGE);
    expect(err.message).toMatch(/the limit is 262144/);
    const { ack } = await sendDirect(asCoordinator, a.id, envelope(big));
    expect(ack.problem?.code).toBe(Codes.TOO_LARGE);
  });

  it("a negative limit (which arrives as a huge unsigned number) fails the module's check", async () => {
    // -1 sent by a client as int32 reads as 2^32 - 1 in the uint32 field.
    const body = fileAction({ paths: ["/etc"], options: { maxDepth: 2 ** 32 - 1, returnHashes: [] } });
    const { ack, results } = await sendDirect(asCoordinator, a.id, envelope(signAction(body, fleet.alice)));
    expect(ack.problem?.code).toBe(Codes.PARAMS);
    expect(ack.problem?.message).toMatch(/maxdepth must be between 0 and 1024 \(got 4294967295\)/);
    expect(results).toEqual([]);
  });
});
