import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { AgentStatus, CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { AGENT_EXE, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// The built single executable, run as on an endpoint without Node.js: from an
// empty directory, with an empty environment.

let fleet: TestFleet;
const running: ChildProcess[] = [];

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet();
});

afterAll(async () => {
  for (const p of running) if (p.exitCode === null) p.kill("SIGKILL");
  await fleet?.stop();
});

/** Starts the executable with its own NATS credentials over TLS, as an enrolled endpoint would. */
async function startAgentExe(stateDir: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const cwd = tempDir("dragnet-empty-");
  const child = spawn(
    AGENT_EXE,
    [
      ...(await fleet.agentExeFlags(stateDir)),
      ...["--keyring", fleet.keyringPath, "--hostname", "exe-host", "--heartbeat-interval", "500"],
      ...["--tag", "kind=exe"],
    ],
    { cwd, env, stdio: ["ignore", "ignore", "pipe"] },
  );
  running.push(child);
  return child;
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  return exited;
}

async function waitOnline(startedAfter: number) {
  return eventually(async () => {
    const agents = await fleet.api.listAgents('hostname == "exe-host"');
    const a = agents.find(
      (x) => x.startedAtMs >= startedAfter && x.status === AgentStatus.AGENT_STATUS_ONLINE,
    );
    return a;
  }, 15_000);
}

describe("the agent executable", () => {
  it("runs from an empty directory with an empty environment and reports /etc/passwd's SHA-256 as sha256sum does", async () => {
    const stateDir = join(tempDir(), "state");
    const t0 = Date.now();
    const child = await startAgentExe(stateDir, {});
    const agent = await waitOnline(t0 - 1000);
    expect(agent.tags).toEqual({ kind: "exe" });

    const body = fileAction(
      { paths: ["/etc/passwd"], options: { returnHashes: ["sha256"] } },
      { target: `id == "${agent.id}"` },
    );
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
    const op = results[0]!.result!.operations[0]!.module;
    expect(op?.$case).toBe("file");
    const expected = execFileSync("sha256sum", ["/etc/passwd"], { encoding: "utf8" }).split(" ")[0];
    if (op?.$case === "file") expect(op.value.matches.map((m) => m.sha256)).toEqual([expected]);

    // Its id is kept in the state directory: a restart is the same agent.
    expect(await stop(child)).toBe(0);
    const t1 = Date.now();
    await startAgentExe(stateDir, {});
    const again = await waitOnline(t1);
    expect(again.id).toBe(agent.id);
    expect(again.startedAtMs).toBeGreaterThan(agent.startedAtMs);
  });

  it("does not honour NODE_OPTIONS from its environment", async () => {
    const dir = tempDir();
    const marker = join(dir, "preloaded");
    const evil = join(dir, "evil.js");
    writeFileSync(evil, `require("fs").writeFileSync(${JSON.stringify(marker)}, "ran")`);
    mkdirSync(join(dir, "state"));
    const t0 = Date.now();
    const child = await startAgentExe(join(dir, "state"), { NODE_OPTIONS: `--require ${evil}` });
    await waitOnline(t0);
    expect(existsSync(marker)).toBe(false);
    // A plain node does honour it, so the test would see a preload that ran.
    execFileSync(process.execPath, ["-e", "0"], { env: { NODE_OPTIONS: `--require ${evil}` } });
    expect(existsSync(marker)).toBe(true);
    await stop(child);
  });

  it("refuses to start, as root, with a keyring another user could change", async () => {
    const dir = tempDir();
    const ring = join(dir, "keyring.json");
    copyFileSync(fleet.keyringPath, ring);
    chmodSync(ring, 0o664);
    const flags = await fleet.agentExeFlags(join(dir, "state"));
    const child = spawn(AGENT_EXE, [...flags, "--keyring", ring], {
      env: {},
      stdio: ["ignore", "ignore", "pipe"],
    });
    running.push(child);
    let stderr = "";
    child.stderr!.on("data", (d) => {
      stderr += String(d);
    });
    if (process.getuid?.() !== 0) {
      // Not root: the check does not apply, and the agent runs.
      await new Promise((r) => setTimeout(r, 1000));
      expect(child.exitCode).toBeNull();
      child.kill("SIGTERM");
      return;
    }
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /the keyring .*keyring\.json is writable by its group \(mode 664\); the agent runs as root and refuses it/,
    );
  });
});
