import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../common/mod.js";

// The host's own tools the agent runs (firewall commands, systemd-notify),
// found where they live even when the agent's environment has no PATH.

/** The system directories tools live in: an agent started with a clean environment has no PATH. */
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** A tool's full path, from PATH and then the system directories; undefined when it is not installed. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SYSTEM_DIRS];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * When systemd watches this agent (WatchdogSec in its unit, which sets
 * WATCHDOG_USEC and NOTIFY_SOCKET), tells it three times a period that the
 * main thread is alive, through systemd-notify. A main thread that hangs
 * (a pathological pattern, a bug) stops telling, and systemd restarts the
 * agent. Returns the timer, or undefined when nobody watches.
 */
export function startWatchdogPings(log: Logger): NodeJS.Timeout | undefined {
  const usec = Number(process.env.WATCHDOG_USEC);
  const pid = process.env.WATCHDOG_PID ? Number(process.env.WATCHDOG_PID) : process.pid;
  if (!usec || !process.env.NOTIFY_SOCKET || pid !== process.pid) return undefined;
  const tool = findTool("systemd-notify");
  if (!tool) {
    log.warn("systemd watches this agent, but systemd-notify is not installed: it will restart the agent");
    return undefined;
  }
  const ping = () =>
    spawn(tool, [`--pid=${process.pid}`, "WATCHDOG=1"], { stdio: "ignore" }).on("error", (err) =>
      log.warn("systemd-notify failed", { error: err }),
    );
  ping();
  const timer = setInterval(ping, Math.max(1000, Math.floor(usec / 1000 / 3)));
  timer.unref();
  return timer;
}
