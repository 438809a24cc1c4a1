import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jwtLifetime, parseCreds } from "../../common/agent-identity.js";
import {
  Codes,
  generateInvestigatorKey,
  newId,
  publicEntryOf,
  saveInvestigatorKey,
} from "../../common/mod.js";
import { AgentStatus, Alert, CommandResult, EvidenceChunk, EvidenceReceipt } from "../../proto/api.js";
import { AGENT_EXE, dragnet, ndjson, requireBuild, twoPeople } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// What an attacker holding one agent's credentials (or one investigator's
// key) tried, against the real executables — coordinator and agents as
// their own processes — each attack with what must hold: the refusal, or the
// survival of what it aimed at.

let fleet: TestFleet;
let home: string;
const work = tempDir("dragnet-attacks-");
const children: ChildProcess[] = [];
const intern = generateInvestigatorKey("intern");
const agents: Record<string, { id: string; stateDir: string; pid: number }> = {};
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => dragnet(["--home", home, ...args], env);

async function startAgent(name: string, extraFlags: string[] = [], config?: string) {
  const stateDir = join(work, name, "state");
  const flags = config ? ["--config", config] : await fleet.agentExeFlags(stateDir);
  const child = spawn(
    AGENT_EXE,
    [
      "run",
      "--hostname",
      name,
      "--keyring",
      fleet.keyringPath,
      "--heartbeat-interval",
      "500",
      ...flags,
      ...extraFlags,
    ],
    { stdio: "ignore", env: {} },
  );
  children.push(child);
  const id = readFileSync(join(config ? join(work, name, "state") : stateDir, "agent-id"), "utf8").trim();
  agents[name] = { id, stateDir, pid: child.pid! };
  await eventually(
    async () => ((await fleet.api.listAgents(`id == "${id}"`)).length ? true : undefined),
    20_000,
  );
  return agents[name]!;
}

/** The audit entries (newest first) of one event. */
async function audited(event: string) {
  return (await fleet.api.listAudit(500)).filter((e) => e.event === event);
}

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 0, enrollment: true, credentialsExpire: "12s" });
  // An intern: in the keyring with weight 0 and the default roles.
  const ring = JSON.parse(readFileSync(fleet.keyringPath, "utf8"));
  ring.investigators.push({ ...publicEntryOf(intern), weight: 0 });
  writeFileSync(fleet.keyringPath, JSON.stringify(ring));
  await fleet.spawnCoordinator();
  home = fleet.consoleHome();
  saveInvestigatorKey(join(home, "intern.key"), intern);
  await startAgent("host-a");
  await startAgent("host-b");
}, 120_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await fleet?.stop();
});

describe("credentials", () => {
  it("expire and are renewed by an enrolled agent before they do; a revoked agent is refused, cut off and not renewed", async () => {
    const token = (await cli(["enroll", "token", "create", "--uses", "1"])).stdout.split("\n")[0]!;
    const dir = join(work, "enrolled");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const config = join(dir, "config.json");
    writeFileSync(
      config,
      JSON.stringify({
        nats: { servers: [fleet.nats.url], ca: fleet.caFile },
        keyring: fleet.keyringPath,
        stateDir: join(dir, "state"),
      }),
      { mode: 0o600 },
    );
    const enrolled = await new Promise<number>((resolve) =>
      execFile(
        AGENT_EXE,
        ["enroll", "--coordinator-nats", fleet.nats.url, "--token", token, "--config", config],
        { env: {} },
        (err) => resolve(err ? 1 : 0),
      ),
    );
    expect(enrolled).toBe(0);
    const creds = () => JSON.parse(readFileSync(config, "utf8")).nats.creds as string;
    const first = jwtLifetime(parseCreds(readFileSync(creds(), "utf8")).jwt);
    // The fleet's 12 s credentials: the expiry is the coordinator's clock at the request plus 12 s, in
    // whole seconds; the JWT library stamps iat when it signs, a moment later — one second later
    // when a second boundary falls between the two readings (seen once in CI).
    expect(first.exp - first.iat).toBeGreaterThanOrEqual(11);
    expect(first.exp - first.iat).toBeLessThanOrEqual(12);
    const c = await startAgent("enrolled", [], config);
    // Past its first credentials' expiry it is still online: it renewed them (the same key, a new JWT).
    await new Promise((r) => setTimeout(r, Math.max(0, first.exp * 1000 + 3000 - Date.now())));
    const renewed = jwtLifetime(parseCreds(readFileSync(creds(), "utf8")).jwt);
    expect(renewed.exp).toBeGreaterThan(first.exp);
    expect((await fleet.api.listAgents(`id == "${c.id}"`))[0]?.status).toBe(AgentStatus.AGENT_STATUS_ONLINE);
    expect((await audited("credentials renewed")).some((e) => e.agentId === c.id)).toBe(true);
    // Revoked: gone from the fleet, its heartbeats refused, its credentials not renewed.
    const bob = await cli(["--key", join(home, "bob.key"), "agents", "revoke", c.id]);
    expect(bob.code).toBe(2);
    const revoked = await cli(["agents", "revoke", c.id, "--reason", "laptop stolen"]);
    expect([revoked.code, revoked.stdout]).toEqual([
      0,
      expect.stringMatching(/revoked: its messages are refused/),
    ]);
    expect(await fleet.api.listAgents(`id == "${c.id}"`)).toEqual([]);
    await eventually(async () => {
      const refused = (await audited("heartbeat refused")).find((e) =>
        e.message.includes(`agent ${c.id} was revoked`),
      );
      return refused ? true : undefined;
    }, 10_000);
    await eventually(
      async () => ((await audited("credentials not renewed")).length ? true : undefined),
      20_000,
    );
  }, 60_000);
});

describe("one agent's stolen credentials", () => {
  let stolen: NatsConnection;
  let sign: (subject: string, data: Uint8Array) => import("@nats-io/transport-node").MsgHdrs;

  beforeAll(async () => {
    ({ nc: stolen, sign } = await fleet.stealAgent(agents["host-a"]!.id));
  });

  it("cannot write pages into an incident: an alert naming an action that started no watch there is stored, not put in the notebook", async () => {
    const a = agents["host-a"]!.id;
    const incident = (await fleet.api.openIncident("attempted forgery", "high")).id;
    const swept = await cli([
      "--json",
      "file",
      "-t",
      "all",
      "--path",
      "/etc/hostname",
      "--incident",
      incident,
      "--no-wait",
    ]);
    const actionId = String(ndjson(swept.stdout)[0]!.actionId);
    const alert = Alert.encode(
      Alert.fromPartial({
        id: newId(),
        agentId: a,
        hostname: "the-ceo-laptop",
        atMs: Date.now(),
        source: "drift",
        watch: "etc",
        actionId,
        detectedBy: "notify",
        changes: [{ path: "/etc/shadow", kind: "changed", what: ["content"] }],
      }),
    ).finish();
    const subject = `dragnet.alert.${a}.${Alert.decode(alert).id}`;
    const js = (await import("@nats-io/jetstream")).jetstream(stolen);
    await js.publish(subject, alert, { headers: sign(subject, alert) });
    await eventually(async () =>
      (await audited("alert not put in the notebook")).length ? true : undefined,
    );
    const { pages } = await fleet.api.getIncident(incident);
    expect(pages.map((p) => p.kind)).not.toContain("alert");
    const verify = await cli(["incident", "verify", incident]);
    expect(verify.code).toBe(0);
  });
  it("have no JetStream API, and the server's own replies on another agent's subjects are refused, blaming nobody", async () => {
    const a = agents["host-a"]!.id;
    const b = agents["host-b"]!.id;
    await expect(jetstreamManager(stolen)).rejects.toThrow(
      /Permissions Violation for Publish to "\$JS\.API\.INFO"/,
    );
    // A publish to its own result subject whose reply goes to B's heartbeat and alert
    // subjects: the server sends its acknowledgement there, as itself.
    const junk = Buffer.from("not a result");
    const own = `dragnet.res.${a}.main.${newId()}`;
    stolen.publish(own, junk, { headers: sign(own, junk), reply: `dragnet.hb.${b}` });
    stolen.publish(own, junk, { headers: sign(own, junk), reply: `dragnet.alert.${b}.${newId()}` });
    await stolen.flush();
    const refusals = await eventually(async () => {
      const r = [...(await audited("heartbeat refused")), ...(await audited("alert refused"))].filter(
        (e) => e.code === Codes.AGENT_UNSIGNED,
      );
      return r.length >= 2 ? r : undefined;
    });
    for (const r of refusals) expect([r.actor, r.agentId]).toEqual(["unknown publisher", ""]);
    expect((await fleet.api.listAgents(`id == "${b}"`))[0]!.hostname).toBe("host-b");
    expect((await fleet.api.listAlerts(`id == "${b}"`, 0, 10)).length).toBe(0);
  });

  it("uploads nothing nobody asked for, and a flood of forged chunks neither stops a real collect nor the collecting agent", async () => {
    const a = agents["host-a"]!.id;
    const subject = `dragnet.evidence.${a}.main`;
    const asks: Array<Promise<unknown>> = [];
    for (let i = 0; i < 300; i++) {
      const data = EvidenceChunk.encode(
        EvidenceChunk.fromPartial({
          uploadId: newId(),
          actionId: newId(),
          offset: i === 0 ? 0 : 4 * 1024 ** 3,
          data: Buffer.alloc(1024),
          file: { path: "/etc/passwd", size: 64 * 1024 ** 3, sha256: "0".repeat(64), uploadId: "" },
        }),
      ).finish();
      asks.push(stolen.request(subject, data, { headers: sign(subject, data), timeout: 10_000 }));
    }
    const answers = (await Promise.all(asks)).map((m) =>
      EvidenceReceipt.decode((m as { data: Uint8Array }).data),
    );
    // The announced one names no running collect of A's; the others were never announced.
    expect(new Set(answers.map((x) => x.problem?.code))).toEqual(
      new Set([Codes.NOT_ALLOWED, Codes.NOT_FOUND]),
    );
    expect(readdirSync(join(fleet.dir, "evidence", ".partial"))).toEqual([]);
    // A real two-person collect from B goes through, and B keeps running.
    const file = join(work, "evidence.bin");
    writeFileSync(file, Buffer.alloc(600 * 1024, 7));
    const collected = await twoPeople(home, [
      "collect",
      "-t",
      `id == "${agents["host-b"]!.id}"`,
      "--path",
      file,
    ]);
    expect([collected.code, collected.rows[0]?.size]).toEqual([0, 600 * 1024]);
    expect(() => process.kill(agents["host-b"]!.pid, 0)).not.toThrow();
  });

  it("cannot push another agent's result out of the stream: 1,100 server replies aimed at its results, and its answer still arrives", async () => {
    const a = agents["host-a"]!.id;
    const b = agents["host-b"]!.id;
    const own = `dragnet.res.${a}.main.${newId()}`;
    const junk = CommandResult.encode(CommandResult.fromPartial({ agentId: b })).finish();
    // B's result subjects end in a command id nobody else reads: a guess lands beside them, never on them.
    for (let i = 0; i < 1100; i++) {
      stolen.publish(own, junk, { headers: sign(own, junk), reply: `dragnet.res.${b}.main.${newId()}` });
    }
    await stolen.flush();
    const r = await cli([
      "--json",
      "file",
      "-t",
      `id == "${b}"`,
      "--path",
      "/etc",
      "--name",
      "^hostname$",
      "--maxdepth",
      "0",
    ]);
    expect([r.code, ndjson(r.stdout).map((row) => row.path)]).toEqual([0, ["/etc/hostname"]]);
  });
});

describe("one investigator's key", () => {
  it("cannot hang the fleet with a target regex: RE2 answers a nested quantifier at once", async () => {
    const started = Date.now();
    const r = await cli([
      "--json",
      "file",
      "-t",
      'status == "online" or id ~ "^([0-9a-z]+)+!"',
      "--path",
      "/etc/hostname",
    ]);
    expect(r.code).toBe(0);
    expect(new Set(ndjson(r.stdout).map((row) => (row.agent as { hostname: string }).hostname))).toEqual(
      new Set(["host-a", "host-b"]),
    );
    expect(Date.now() - started).toBeLessThan(20_000);
    // A pattern RE2 cannot run (lookahead) is refused before anything is signed.
    const refused = await cli(["file", "-t", 'hostname ~ "^(?=host)"', "--path", "/etc/hostname"]);
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringMatching(/RE2 syntax/)]);
  });

  it("cannot collect an agent's own credentials through a linked directory", async () => {
    const b = agents["host-b"]!;
    const link = join(work, "innocent");
    symlinkSync(b.stateDir, link);
    const r = await twoPeople(home, [
      "collect",
      "-t",
      `id == "${b.id}"`,
      "--path",
      join(link, "agent.creds"),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is one of the agent's own files .* never moved or sent/);
  });

  it("cannot read process memory alone: it needs a second investigator", async () => {
    const r = await cli(["memory", "-t", "all", "--name", "^bash$", "--string", "secret", "--no-wait"]);
    expect([r.code, r.stderr]).toEqual([
      3,
      expect.stringMatching(/waits for approval: signed with weight 1, needs 2/),
    ]);
  });

  it("cannot administer without the admin role: bob (default roles) and a weight-0 key are refused enrolment tokens", async () => {
    const bob = await cli(["--key", join(home, "bob.key"), "enroll", "token", "create"]);
    expect([bob.code, bob.stderr]).toEqual([
      2,
      expect.stringMatching(/bob may not call CreateEnrollmentToken: it needs the admin role/),
    ]);
    const weightless = await cli(["--key", join(home, "intern.key"), "enroll", "token", "create"]);
    expect([weightless.code, weightless.stderr]).toEqual([
      2,
      expect.stringMatching(/intern may not call CreateEnrollmentToken/),
    ]);
    const alice = await cli(["enroll", "token", "create", "--uses", "1"]);
    expect(alice.code).toBe(0);
  });

  it("cannot make the console read /dev/zero as an action file", async () => {
    const r = await cli(["action", "import", "/dev/zero"]);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/not a regular file/)]);
  });
});

describe("the audit log", () => {
  it("names the first entry deleted or edited in the database, and says intact otherwise", async () => {
    const intact = await cli(["--json", "audit", "verify"]);
    expect([intact.code, ndjson(intact.stdout).map((r) => r.state)]).toEqual([0, ["intact"]]);
    const db = new Database(join(fleet.dir, "coordinator.db"));
    try {
      db.prepare("UPDATE audit SET message = 'nothing happened' WHERE chain = 'main' AND n = 5").run();
      const edited = await cli(["--json", "audit", "verify"]);
      expect([edited.code, ndjson(edited.stdout)[0]]).toEqual([
        1,
        expect.objectContaining({
          state: "BROKEN",
          brokenAt: 5,
          problem: "its content no longer matches its hash (edited)",
        }),
      ]);
      db.prepare("DELETE FROM audit WHERE chain = 'main' AND n = 3").run();
      const deleted = await cli(["--json", "audit", "verify"]);
      expect(ndjson(deleted.stdout)[0]).toMatchObject({
        brokenAt: 3,
        problem: "entry 3 is missing (the next is 4)",
      });
    } finally {
      db.close();
    }
  });
});
