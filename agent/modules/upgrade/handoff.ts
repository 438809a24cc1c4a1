import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { Codes, DragnetError, writeFileAtomic } from "../../../common/mod.js";

// The hand-over from one agent version to the next. The running agent stages
// the verified executable beside its own, keeps a copy of itself as
// `<exe>.previous`, writes `upgrade.json` and swaps the files with one rename.
// It then starts a watchdog — the previous executable, which is known to work,
// run as `dragnet-agent upgrade-watch` outside the agent's own process group
// (or systemd unit) — and exits. The watchdog starts the new version where no
// systemd does, and waits for it to mark itself healthy (connected, heartbeat
// sent); if it does not in time, the watchdog stops it, puts the previous
// executable back and starts that, which then reports the roll-back.

export const UPGRADE_FILE = "upgrade.json";

export type UpgradeStage = "pending" | "healthy" | "rolling-back" | "rolled-back";

export interface UpgradeState {
  version: 1;
  state: UpgradeStage;
  actionId: string;
  from: string;
  to: string;
  sha256: string;
  /** The executable that was replaced, and the copy of the one it replaced. */
  exe: string;
  previous: string;
  startedAtMs: number;
  healthTimeoutMs: number;
  /** How to start the agent again where no service manager does it: its arguments, directory and log. */
  args: string[];
  cwd: string;
  logFile?: string;
  /** The systemd unit the agent runs in, if any (it restarts the agent itself). */
  unit?: string;
  oldPid: number;
  newPid?: number;
  detail?: string;
}

export function readUpgradeState(stateDir: string): UpgradeState | undefined {
  try {
    const s = JSON.parse(readFileSync(join(stateDir, UPGRADE_FILE), "utf8")) as UpgradeState;
    return s?.version === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeUpgradeState(stateDir: string, s: UpgradeState): void {
  writeFileAtomic(join(stateDir, UPGRADE_FILE), `${JSON.stringify(s, null, 2)}\n`, 0o600);
}

/** The systemd service this process runs in, from its cgroup (undefined outside systemd). */
export function systemdUnitOfSelf(): string | undefined {
  try {
    const cgroup = readFileSync("/proc/self/cgroup", "utf8");
    return /\/([^/\n]+\.service)\s*$/m.exec(cgroup)?.[1];
  } catch {
    return undefined;
  }
}

/** Where this process's stdout goes, when that is a file (a lab agent's log): the new version logs there too. */
export function logFileOfSelf(): string | undefined {
  try {
    const target = readlinkSync("/proc/self/fd/1");
    return target.startsWith("/") && existsSync(target) && statSync(target).isFile() ? target : undefined;
  } catch {
    return undefined;
  }
}

/** Copies `from` to `to` through a temporary file beside it, synced, then renamed: `to` is never half-written. */
export function replaceAtomically(from: string, to: string, mode: number): void {
  const tmp = join(dirname(to), `.${basename(to)}.tmp-${process.pid}`);
  copyFileSync(from, tmp);
  const fd = openSync(tmp, "r+");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, to);
}

/** Receives a download into `path`, hashing it; refuses more than `size` bytes. */
export async function receiveFile(
  path: string,
  data: AsyncIterable<Uint8Array>,
  size: number,
  signal: AbortSignal,
): Promise<{ size: number; sha256: string }> {
  const fd = openSync(path, "w", 0o700);
  const hash = createHash("sha256");
  let received = 0;
  try {
    for await (const chunk of data) {
      signal.throwIfAborted();
      received += chunk.length;
      if (received > size) {
        throw new DragnetError(Codes.PARAMS, `the release is larger than its manifest says (${size} bytes)`);
      }
      hash.update(chunk);
      writeSync(fd, chunk);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // Made 0700 while it was being written; an installed agent executable is 0755.
  chmodSync(path, 0o755);
  return { size: received, sha256: hash.digest("hex") };
}

/** Starts an agent executable in its own session, detached from this process, logging where the agent logged. */
export function startDetached(exe: string, args: string[], s: UpgradeState): number {
  const out = s.logFile ? openSync(s.logFile, "a") : "ignore";
  const child = spawn(exe, args, { cwd: s.cwd, detached: true, stdio: ["ignore", out, out], env: {} });
  if (typeof out === "number") closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${exe}`);
  return child.pid;
}

/** Starts the watchdog from the previous executable, outside the agent's process group or unit. */
export function startWatchdog(s: UpgradeState, stateDir: string): void {
  const args = ["upgrade-watch", "--state-dir", stateDir];
  if (s.unit) {
    const r = spawnSync(
      "systemd-run",
      [
        "--unit",
        `dragnet-agent-upgrade-${s.actionId.slice(-8).toLowerCase()}`,
        "--collect",
        "--quiet",
        s.previous,
        ...args,
      ],
      { encoding: "utf8" },
    );
    if (r.status !== 0) throw new Error(`systemd-run failed: ${(r.stderr || r.error?.message || "").trim()}`);
    return;
  }
  startDetached(s.previous, args, s);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stopPid(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, "SIGKILL");
}

function systemctl(args: string[]): void {
  spawnSync("systemctl", args, { stdio: "ignore" });
}

/**
 * `dragnet-agent upgrade-watch`: run from the previous executable. Waits for
 * the old agent to exit, starts the new one (unless systemd does), and rolls
 * back unless the new one marks itself healthy within the time the action gave.
 */
export async function watchUpgrade(stateDir: string, log: (line: string) => void): Promise<UpgradeStage> {
  let s = readUpgradeState(stateDir);
  if (s?.state !== "pending") throw new Error(`no pending upgrade in ${stateDir}`);
  for (let i = 0; i < 300 && alive(s.oldPid); i++) await sleep(100);
  if (alive(s.oldPid)) process.kill(s.oldPid, "SIGKILL");
  if (!s.unit) {
    s = { ...s, newPid: startDetached(s.exe, s.args, s) };
    writeUpgradeState(stateDir, s);
  }
  log(`upgrade ${s.from} -> ${s.to}: waiting up to ${s.healthTimeoutMs} ms for the new version`);
  const deadline = Date.now() + s.healthTimeoutMs;
  let why = `did not come back healthy within ${Math.round(s.healthTimeoutMs / 1000)} s`;
  while (Date.now() < deadline) {
    const now = readUpgradeState(stateDir);
    if (now?.state === "healthy") {
      log(`upgrade to ${s.to} healthy`);
      return "healthy";
    }
    if (s.newPid !== undefined && !alive(s.newPid)) {
      why = "exited before it was healthy";
      break;
    }
    await sleep(250);
  }
  // Last look: it may have become healthy just now.
  if (readUpgradeState(stateDir)?.state === "healthy") return "healthy";
  writeUpgradeState(stateDir, { ...s, state: "rolling-back", detail: why });
  if (s.unit) systemctl(["stop", s.unit]);
  else if (s.newPid !== undefined) await stopPid(s.newPid);
  replaceAtomically(s.previous, s.exe, 0o755);
  writeUpgradeState(stateDir, {
    ...s,
    state: "rolled-back",
    detail: `version ${s.to} ${why}; back on ${s.from}`,
  });
  log(`upgrade to ${s.to} rolled back: ${why}`);
  if (s.unit) systemctl(["start", s.unit]);
  else startDetached(s.exe, s.args, s);
  return "rolled-back";
}
