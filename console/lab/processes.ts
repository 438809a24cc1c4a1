import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import { Codes, DragnetError } from "../../common/mod.js";
import { isAlive } from "../../common/pids.js";

// Starting, finding and stopping the lab's own processes. A process is only
// signalled when /proc confirms it is still the program the lab started, so a
// recycled pid is never killed.

export interface StartedProcess {
  pid: number;
  /** The executable (or script) that identifies this process in its command line. */
  marker: string;
  log: string;
}

export function startDetached(
  command: string,
  args: string[],
  options: { log: string; env: NodeJS.ProcessEnv; cwd: string; marker?: string; uid?: number; gid?: number },
): StartedProcess {
  const out = openSync(options.log, "a", 0o600);
  try {
    const child = spawn(command, args, {
      detached: true,
      stdio: ["ignore", out, out],
      env: options.env,
      cwd: options.cwd,
      // PostgreSQL's server runs as its own user, never as root.
      ...(options.uid !== undefined ? { uid: options.uid, gid: options.gid } : {}),
    });
    if (child.pid === undefined) throw new Error(`could not start ${command}`);
    child.unref();
    return { pid: child.pid, marker: options.marker ?? command, log: options.log };
  } finally {
    closeSync(out);
  }
}

/** Is `pid` alive and still running what the lab started? */
export function isOurs(p: { pid: number; marker: string }): boolean {
  if (!isAlive(p.pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${p.pid}/cmdline`, "utf8");
    return cmdline.includes(p.marker);
  } catch {
    // No /proc (macOS): trust the pid.
    return process.platform !== "linux";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, then SIGKILL after `graceMs`. Resolves with how it ended. */
export async function stopProcess(
  p: { pid: number; marker: string },
  graceMs = 8000,
): Promise<"stopped" | "killed" | "gone" | "not ours"> {
  if (!isAlive(p.pid)) return "gone";
  if (!isOurs(p)) return "not ours";
  process.kill(p.pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(p.pid)) return "stopped";
    await sleep(50);
  }
  process.kill(p.pid, "SIGKILL");
  return "killed";
}

export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    await sleep(100);
  }
  throw new DragnetError(
    Codes.UNAVAILABLE,
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ""}`,
  );
}

export function tcpReady(port: number, host = "127.0.0.1"): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(undefined));
  });
}

export function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** nats-server from PATH or Debian's /usr/sbin. */
export function findNatsServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/bin", "/usr/bin"];
  for (const d of dirs) {
    const candidate = join(d, "nats-server");
    if (d && existsSync(candidate)) return candidate;
  }
  return undefined;
}
