import { execFile, execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { jetstreamManager } from "@nats-io/jetstream";
import { decode } from "@nats-io/jwt";
import { fromSeed } from "@nats-io/nkeys";
import { Objm } from "@nats-io/obj";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateInvestigatorKey, publicEntryOf, saveInvestigatorKey } from "../../common/mod.js";
import { RELEASES_BUCKET } from "../../common/nats-authority.js";
import { currentPlatform, releaseObjectName, signRelease } from "../../common/release.js";
import { AGENT_EXE, dragnet, ndjson, ROOT, requireBuild, twoPeople } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// Deploying agents, with the real executables: enrolment with a token made by
// `dragnet enroll token create` (refused when used up, expired, revoked, or
// for an id that is taken), and upgrades through `dragnet release publish` +
// `dragnet agents upgrade` (two people): to a new build and back, a roll-back
// when the new version never comes up, and releases refused for an unknown
// key or a hash that does not match.

let fleet: TestFleet;
let home: string;
const work = tempDir("dragnet-deploy-");
const v2 = join(work, "dragnet-agent-0.9.0");
const releaseKey = generateInvestigatorKey("release-2026");
const releaseKeyFile = join(work, "release.key");
const pids = new Set<number>();
const cli = (args: string[]) => dragnet(["--home", home, ...args]);
const publish = (file: string, version: string, key = releaseKeyFile, ...more: string[]) =>
  cli(["release", "publish", file, "--version", version, "--release-key", key, ...more]);

/** An agent config in its own directory, as an admin writes it before enrolment (no credentials). */
function agentConfig(name: string, extra: Record<string, unknown> = {}): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const config = join(dir, "config.json");
  writeFileSync(
    config,
    JSON.stringify({
      nats: { servers: ["tls://127.0.0.1:1"], ca: fleet.caFile },
      keyring: fleet.keyringPath,
      stateDir: join(dir, "state"),
      heartbeatIntervalMs: 500,
      ...extra,
    }),
    { mode: 0o600 },
  );
  return config;
}

/** Runs the agent executable to completion without blocking this process (the coordinator runs in it). */
function agentExe(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(AGENT_EXE, args, { encoding: "utf8", env: {} }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** `dragnet-agent enroll` against the test fleet's NATS. */
const enrollWith = (token: string, config: string) =>
  agentExe(["enroll", "--coordinator-nats", fleet.nats.url, "--token", token, "--config", config]);

async function createToken(args: string[]): Promise<string> {
  const r = await cli(["enroll", "token", "create", ...args]);
  expect([r.code, r.stderr]).toEqual([0, ""]);
  return r.stdout.split("\n")[0]!;
}

/** Starts an agent executable in the background, logging to a file; the pid is stopped after the tests. */
function startAgent(exe: string, config: string): number {
  const log = join(work, `agent-${Date.now()}.log`);
  const out = openSync(log, "a");
  const child = spawn(exe, ["run", "--config", config], {
    detached: true,
    stdio: ["ignore", out, out],
    env: {},
  });
  child.unref();
  pids.add(child.pid!);
  return child.pid!;
}

/** The pid the agent in `stateDir` reports now (an upgraded agent is a new process). */
const statusOf = (stateDir: string) =>
  JSON.parse(readFileSync(join(stateDir, "status.json"), "utf8")) as { pid: number; version: string };

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 1, enrollment: true });
  home = fleet.consoleHome();
  saveInvestigatorKey(releaseKeyFile, releaseKey);
  writeFileSync(
    join(work, "release-keys.json"),
    JSON.stringify({ releaseKeys: [publicEntryOf(releaseKey)] }),
    {
      mode: 0o600,
    },
  );
  // A second build of the agent that reports another version.
  execFileSync(process.execPath, [join(ROOT, "scripts", "build.mjs")], {
    env: { ...process.env, DRAGNET_AGENT_OUT: v2, DRAGNET_AGENT_VERSION: "0.9.0" },
    stdio: "pipe",
  });
}, 120_000);

afterAll(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  await fleet?.stop();
});

describe("enrolment", () => {
  let enrolledConfig: string;

  it("an agent enrols with a token: its own key pair, credentials and tags; it then shows up in `dragnet agents`", async () => {
    const token = await createToken(["--tags", "env=prod,role=web", "--uses", "1", "--expires", "1h"]);
    enrolledConfig = agentConfig("enrolled");
    const r = await enrollWith(token, enrolledConfig);
    expect([r.status, r.stderr]).toEqual([0, ""]);
    const agentId = /enrolled as agent (\S+)/.exec(r.stdout)![1]!;
    expect(r.stdout).toContain("tags env=prod, role=web");

    const config = JSON.parse(readFileSync(enrolledConfig, "utf8"));
    expect(config.nats.servers).toEqual([fleet.nats.url]);
    expect(config.tags).toEqual({ env: "prod", role: "web" });
    expect(config.keyring).toBe(fleet.keyringPath);
    const creds = readFileSync(config.nats.creds, "utf8");
    expect(statSync(config.nats.creds).mode & 0o777).toBe(0o600);
    // The JWT is for the key whose seed is in the file, and limited to this agent's own subjects.
    const jwt = /-----BEGIN NATS USER JWT-----\s*(\S+)/.exec(creds)![1]!;
    const seed = /-----BEGIN USER NKEY SEED-----\s*(\S+)/.exec(creds)![1]!;
    const claims = decode<{ pub: { allow: string[] }; sub: { allow: string[] } }>(jwt);
    expect(claims.sub).toBe(fromSeed(Buffer.from(seed)).getPublicKey());
    expect(claims.nats.pub!.allow).toContain(`dragnet.hb.${agentId}`);
    expect(claims.nats.sub!.allow).toEqual([`dragnet.cmd.${agentId}`, `_INBOX.agent.${agentId}.>`]);

    // Its answer lost, the agent asks again with the same key and token: answered, not counted twice.
    const again = await enrollWith(token, enrolledConfig);
    expect([again.status, /enrolled as agent (\S+)/.exec(again.stdout)?.[1]]).toEqual([0, agentId]);
    const tokens = ndjson((await cli(["--json", "enroll", "token", "list"])).stdout);
    expect(tokens.find((t) => t.tags === "env=prod role=web")).toMatchObject({
      used: "1/1",
      state: "used up",
    });

    startAgent(AGENT_EXE, enrolledConfig);
    const listed = await eventually(async () => {
      const r2 = await cli(["--json", "agents", "-t", `id == "${agentId}"`]);
      const rows = ndjson(r2.stdout);
      return rows.length === 1 && rows[0]!.status === "online" ? rows[0] : undefined;
    }, 20_000);
    expect(listed!.tags).toEqual({ env: "prod", role: "web" });
  });

  it("refuses a used-up, an expired and a revoked token, and an id another agent has, each with the reason", async () => {
    const used = await createToken(["--uses", "1"]);
    const first = await enrollWith(used, agentConfig("u1"));
    expect(first.status).toBe(0);
    const again = await enrollWith(used, agentConfig("u2"));
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(
      /enrolment refused: enrolment token \S+ was good for 1 enrolment and is used up/,
    );

    const expiring = await createToken(["--expires", "1s"]);
    await new Promise((r) => setTimeout(r, 1500));
    const late = await enrollWith(expiring, agentConfig("late"));
    expect(late.status).toBe(2);
    expect(late.stderr).toMatch(/enrolment refused: enrolment token \S+ expired at 20\d\d-/);

    const revoked = await createToken([]);
    const list = await cli(["--json", "enroll", "token", "list"]);
    const row = ndjson(list.stdout).find(
      (t) => revoked.length > 0 && t.state === "valid" && t.used === "0/1",
    );
    expect((await cli(["enroll", "token", "revoke", String(row!.id)])).code).toBe(0);
    const tooLate = await enrollWith(revoked, agentConfig("rev"));
    expect(tooLate.stderr).toMatch(/was revoked at/);

    // A host that claims a known agent's id must not take it over.
    const thief = agentConfig("thief");
    mkdirSync(join(work, "thief", "state"), { recursive: true, mode: 0o700 });
    writeFileSync(join(work, "thief", "state", "agent-id"), `${fleet.agents[0]!.id}\n`, { mode: 0o600 });
    const stolen = await enrollWith(await createToken([]), thief);
    expect(stolen.status).toBe(2);
    expect(stolen.stderr).toContain(`agent id ${fleet.agents[0]!.id} is taken by an agent with another key`);

    const bogus = await enrollWith("hello", thief);
    expect(bogus.stderr).toContain("not a Dragnet enrolment token");
    const audit = await cli(["--json", "audit", "--limit", "200"]);
    expect(audit.stdout).toContain("enrolment refused");
  });
});

describe("upgrades", () => {
  let stateDir: string;
  let exe: string;

  beforeAll(async () => {
    // An agent installed as an admin would: its own copy of the executable, release keys from the install config.
    const dir = join(work, "upgraded");
    mkdirSync(join(dir, "bin"), { recursive: true });
    exe = join(dir, "bin", "dragnet-agent");
    copyFileSync(AGENT_EXE, exe);
    const config = agentConfig("upgraded", { releaseKeys: join(work, "release-keys.json") });
    stateDir = join(dir, "state");
    const token = await createToken(["--tags", "ring=canary"]);
    const enrolled = await enrollWith(token, config);
    expect(enrolled.status).toBe(0);
    startAgent(exe, config);
    await eventually(() => (statusOf(stateDir).version === "0.1.0" ? true : undefined), 20_000);
  });

  const target = () => `tags.ring == "canary"`;
  const upgrade = (version: string, ...flags: string[]) =>
    twoPeople(home, ["agents", "upgrade", "-t", target(), "--version", version, ...flags]);
  const agentRow = async () => ndjson((await cli(["--json", "agents", "-t", target()])).stdout)[0]!;

  it("publishes a signed release and upgrades to it: verified, replaced, restarted, healthy, then back", async () => {
    // A binary that reports another version than it is published as would always roll back: refused.
    const mismatch = await publish(v2, "0.9.5");
    expect([mismatch.code, mismatch.stderr]).toEqual([
      2,
      expect.stringMatching(/reports version 0\.9\.0, not 0\.9\.5: .*DRAGNET_AGENT_VERSION=0\.9\.5/),
    ]);
    const pub = await publish(v2, "0.9.0");
    expect([pub.code, pub.stderr]).toEqual([0, ""]);
    const sha = execFileSync("sha256sum", [v2], { encoding: "utf8" }).split(" ")[0]!;
    expect(pub.stdout).toContain(`sha256 ${sha}`);
    const again = await publish(v2, "0.9.0");
    expect(again.stderr).toContain("published already; a version is never replaced");

    const before = statusOf(stateDir).pid;
    const up = await upgrade("0.9.0", "--health-timeout", "30s");
    expect([up.code, up.stderr]).toEqual([0, expect.any(String)]);
    expect(up.rows[0]).toMatchObject({
      state: "staged",
      fromVersion: "0.1.0",
      toVersion: "0.9.0",
      sha256: sha,
      signer: "release-2026",
    });
    const row = await eventually(async () => {
      const r = await agentRow();
      return r.version === "0.9.0" && String(r.upgrade).includes("healthy") ? r : undefined;
    }, 40_000);
    expect(row!.upgrade).toBe("0.9.0 healthy");
    expect(readFileSync(exe).equals(readFileSync(v2))).toBe(true);
    expect(readFileSync(`${exe}.previous`).equals(readFileSync(AGENT_EXE))).toBe(true);
    const after = statusOf(stateDir).pid;
    expect(after).not.toBe(before);
    pids.add(after);

    // And back: the first build, published as 0.1.0.
    expect((await publish(AGENT_EXE, "0.1.0")).code).toBe(0);
    const back = await upgrade("0.1.0", "--health-timeout", "30s");
    expect(back.rows[0]).toMatchObject({ state: "staged", fromVersion: "0.9.0", toVersion: "0.1.0" });
    await eventually(async () => ((await agentRow()).version === "0.1.0" ? true : undefined), 40_000);
    expect(readFileSync(exe).equals(readFileSync(AGENT_EXE))).toBe(true);
    pids.add(statusOf(stateDir).pid);
  }, 120_000);

  it("rolls back a release that never comes up healthy", async () => {
    const broken = join(work, "broken-agent");
    writeFileSync(broken, "#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n", { mode: 0o755 });
    // What cannot run here is refused, unless published unchecked (a build for elsewhere, say).
    const refused = await publish(broken, "0.9.1");
    expect([refused.code, refused.stderr]).toEqual([
      2,
      expect.stringMatching(/cannot run .*broken-agent --version/),
    ]);
    expect((await publish(broken, "0.9.1", releaseKeyFile, "--no-version-check")).code).toBe(0);
    const started = Date.now();
    const up = await upgrade("0.9.1", "--health-timeout", "20s");
    expect(up.rows[0]).toMatchObject({ state: "staged", toVersion: "0.9.1" });
    const row = await eventually(async () => {
      const r = await agentRow();
      return String(r.upgrade).includes("rolled-back") && r.status === "online" ? r : undefined;
    }, 40_000);
    expect(row!.version).toBe("0.1.0");
    expect(row!.upgrade).toMatch(
      /^0\.9\.1 rolled-back: version 0\.9\.1 exited before it was healthy; back on 0\.1\.0/,
    );
    expect(Date.now() - started).toBeLessThan(30_000);
    const status = await agentExe(["status", "--state-dir", stateDir]);
    expect(status.stdout).toMatch(
      /^upgrade {5}0\.9\.1 rolled-back: version 0\.9\.1 exited before it was healthy/m,
    );
    expect(readFileSync(exe).equals(readFileSync(AGENT_EXE))).toBe(true);
    pids.add(statusOf(stateDir).pid);
  }, 60_000);

  it("refuses a release signed by a key it does not trust, and one whose bytes are not what the manifest signs", async () => {
    const mallory = generateInvestigatorKey("mallory");
    const malloryFile = join(work, "mallory.key");
    saveInvestigatorKey(malloryFile, mallory);
    expect((await publish(v2, "6.6.6", malloryFile, "--no-version-check")).code).toBe(0);
    const pid = statusOf(stateDir).pid;
    const unknown = await upgrade("6.6.6");
    expect(JSON.stringify(unknown)).toContain("which is not one of this agent's release keys");

    // A coordinator (or anyone with write access to the bucket) swaps the bytes under a genuine manifest.
    const nc = await fleet.connectNats("coordinator");
    try {
      const os = await new Objm(nc).open(RELEASES_BUCKET);
      const realBytes = readFileSync(v2);
      const signed = signRelease(
        {
          version: "7.0.0",
          platform: currentPlatform(),
          size: realBytes.length,
          sha256: execFileSync("sha256sum", [v2], { encoding: "utf8" }).split(" ")[0]!,
          publishedAtMs: Date.now(),
        },
        releaseKey,
      );
      const evil = Buffer.from(realBytes);
      evil[1000] = evil[1000]! ^ 0xff;
      await os.put(
        {
          name: releaseObjectName(currentPlatform(), "7.0.0"),
          metadata: {
            manifest: signed.manifest,
            signature: Buffer.from(signed.signature).toString("base64"),
            keyId: signed.keyId,
          },
        },
        Readable.toWeb(Readable.from([evil])) as ReadableStream<Uint8Array>,
      );
    } finally {
      await nc.close();
    }
    // Agents have no JetStream API at all (the server would send its answers wherever they said):
    // releases come from the coordinator, part by part.
    const asAgent = await fleet.connectNats({ agentId: fleet.agents[0]!.id });
    try {
      await expect(jetstreamManager(asAgent)).rejects.toThrow(
        /Permissions Violation for Publish to "\$JS\.API\.INFO"/,
      );
    } finally {
      await asAgent.close();
    }
    // The coordinator checks its copy against the manifest before handing it out (the agent would too).
    const swapped = await upgrade("7.0.0");
    expect(JSON.stringify(swapped)).toContain(
      `the stored release ${releaseObjectName(currentPlatform(), "7.0.0")} is not what its manifest names`,
    );
    expect(readFileSync(exe).equals(readFileSync(AGENT_EXE))).toBe(true);
    expect(statusOf(stateDir).pid).toBe(pid);
  }, 60_000);
});

describe("limits on a command", () => {
  it("stops a search, and a main-thread command, that need more memory than commandMemoryMb; the agent answers the next command", async () => {
    const dir = join(work, "limited");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const config = join(dir, "config.json");
    writeFileSync(config, JSON.stringify({ keyring: fleet.keyringPath, commandMemoryMb: 16 }), {
      mode: 0o600,
    });
    const stateDir = join(dir, "state");
    const flags = await fleet.agentExeFlags(stateDir);
    const agentId = readFileSync(join(stateDir, "agent-id"), "utf8").trim();
    const child = spawn(AGENT_EXE, ["run", "--config", config, ...flags], { stdio: "ignore", env: {} });
    pids.add(child.pid!);
    await eventually(
      async () => ((await fleet.api.listAgents(`id == "${agentId}"`)).length ? true : undefined),
      20_000,
    );
    // One 15 MiB line: searching it line by line needs it whole in the worker's heap.
    const big = join(dir, "one-long-line.txt");
    writeFileSync(big, "a".repeat(15 * 1024 * 1024));
    const search = await cli(["--json", "file", "-t", `id == "${agentId}"`, "--path", big, "--content", "b"]);
    expect(search.stderr).toContain("the search needed more than 16 MB of memory and was stopped");
    // On the main thread: a drift baseline of /usr holds every entry in memory, far more than 16 MB.
    const baseline = await cli([
      "drift",
      "baseline",
      "-t",
      `id == "${agentId}"`,
      "--path",
      "/usr",
      "--name",
      "all-usr",
    ]);
    expect(baseline.stderr).toContain(
      "the command grew the agent's memory by more than 16 MB (commandMemoryMb) and was stopped",
    );
    const next = await cli([
      "--json",
      "file",
      "-t",
      `id == "${agentId}"`,
      "--path",
      "/etc",
      "--name",
      "^hostname$",
    ]);
    expect(next.code).toBe(0);
    expect(ndjson(next.stdout).map((r) => r.path)).toEqual(["/etc/hostname"]);
    expect(child.exitCode).toBeNull();
  }, 60_000);
});
