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
import { isAlive } from "../../../common/pids.js";

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

/**
 * The systemd service this process is the main process of, from its cgroup and
 * systemd's own answer (an agent started by hand from some other unit — a shell
 * in rc-local, a CI runner — is not that unit's service).
 */
export function systemdUnitOfSelf(): string | undefined {
  let unit: string | undefined;
  try {
    unit = /\/([^/\n]+\.service)\s*$/m.exec(readFileSync("/proc/self/cgroup", "utf8"))?.[1];
  } catch {
    return undefined;
  }
  if (!unit) return undefined;
  const r = spawnSync("systemctl", ["show", "-p", "MainPID", "--value", unit], { encoding: "utf8" });
  return r.status === 0 && Number(r.stdout.trim()) === process.pid ? unit : undefined;
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

/** What a restarted agent gets of the environment: a PATH (for nft, iptables, ip) and Dragnet's own settings. */
function agentEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH || "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  };
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith("DRAGNET_")) env[k] = v;
  return env;
}

/**
 * Starts an agent executable in its own session, detached from this process,
 * logging where the agent logged. Resolves with its pid, or rejects when it
 * could not be started at all (ENOEXEC, EMFILE...).
 */
export function startDetached(exe: string, args: string[], s: UpgradeState): Promise<number> {
  const out = s.logFile ? openSync(s.logFile, "a") : "ignore";
  return new Promise((resolve, reject) => {
    const child = spawn(exe, args, {
      cwd: s.cwd,
      detached: true,
      stdio: ["ignore", out, out],
      env: agentEnv(),
    });
    if (typeof out === "number") closeSync(out);
    child.once("error", reject);
    child.once("spawn", () => {
      child.unref();
      resolve(child.pid!);
    });
  });
}

/** Starts the watchdog from the previous executable, outside the agent's process group or unit. */
export async function startWatchdog(s: UpgradeState, stateDir: string): Promise<void> {
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
  await startDetached(s.previous, args, s);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Under systemd the new version starts RestartSec after the old one exits: its health window opens later. */
const SYSTEMD_RESTART_ALLOWANCE_MS = 15_000;

async function stopPid(pid: number): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(100);
  if (isAlive(pid)) process.kill(pid, "SIGKILL");
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
  for (let i = 0; i < 300 && isAlive(s.oldPid); i++) await sleep(100);
  if (isAlive(s.oldPid)) process.kill(s.oldPid, "SIGKILL");
  let why = `did not come back healthy within ${Math.round(s.healthTimeoutMs / 1000)} s`;
  let started = true;
  if (!s.unit) {
    try {
      s = { ...s, newPid: await startDetached(s.exe, s.args, s) };
      writeUpgradeState(stateDir, s);
    } catch (err) {
      started = false;
      why = `could not be started (${(err as Error).message})`;
    }
  }
  // systemd starts the new version itself, RestartSec (5 s) after the old one exited.
  const deadline = Date.now() + s.healthTimeoutMs + (s.unit ? SYSTEMD_RESTART_ALLOWANCE_MS : 0);
  log(`upgrade ${s.from} -> ${s.to}: waiting up to ${deadline - Date.now()} ms for the new version`);
  while (started && Date.now() < deadline) {
    if (readUpgradeState(stateDir)?.state === "healthy") {
      log(`upgrade to ${s.to} healthy`);
      return "healthy";
    }
    if (s.newPid !== undefined && !isAlive(s.newPid)) {
      why = "exited before it was healthy";
      break;
    }
    await sleep(250);
  }
  // Last look: it may have become healthy just now.
  if (readUpgradeState(stateDir)?.state === "healthy") return "healthy";
  writeUpgradeState(stateDir, { ...s, state: "rolling-back", detail: why });
  try {
    if (s.unit) systemctl(["stop", s.unit]);
    else if (s.newPid !== undefined) await stopPid(s.newPid);
    // A rename: it needs no free space, and the disk may be full after the download.
    renameSync(s.previous, s.exe);
    writeUpgradeState(stateDir, {
      ...s,
      state: "rolled-back",
      detail: `version ${s.to} ${why}; back on ${s.from}`,
    });
    log(`upgrade to ${s.to} rolled back: ${why}`);
  } finally {
    // Whatever failed above, an agent is started again: the previous one, or failing that what is there.
    if (s.unit) systemctl(["start", s.unit]);
    else await startDetached(s.exe, s.args, s);
  }
  return "rolled-back";
}

/** Past the watchdog's own deadline by this much, a pending upgrade has no watchdog left (the host restarted). */
const WATCHDOG_GONE_AFTER_MS = SYSTEMD_RESTART_ALLOWANCE_MS + 45_000;

/**
 * `dragnet-agent upgrade-check`, run from the previous executable before the
 * service starts (the unit's ExecStartPre): an upgrade still pending long after
 * its watchdog should have decided — the host rebooted during the health window,
 * and the new version never came up — is rolled back here. Anything else: nothing.
 */
export function rollBackAbandoned(stateDir: string, now = Date.now()): string {
  const s = readUpgradeState(stateDir);
  if (s?.state !== "pending" && s?.state !== "rolling-back") return "no upgrade under way";
  if (now - s.startedAtMs < s.healthTimeoutMs + WATCHDOG_GONE_AFTER_MS) return "its watchdog is still on it";
  if (!existsSync(s.previous)) return `nothing to go back to (${s.previous} is gone)`;
  const why = "did not come back healthy, and its watchdog was gone (the host restarted)";
  renameSync(s.previous, s.exe);
  writeUpgradeState(stateDir, {
    ...s,
    state: "rolled-back",
    detail: `version ${s.to} ${why}; back on ${s.from}`,
  });
  return `rolled back to ${s.from}: version ${s.to} ${why}`;
}
