import { readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { Codes, DragnetError } from "../common/mod.js";
import { isAlive } from "../common/pids.js";
import { STATUS_FILE } from "./agent.js";

// `dragnet-agent status`: what the agent on this machine is doing, from the
// status file it rewrites with every heartbeat — and whether it is running at
// all (its pid alive, the file fresh).

/** The state directory a config names (relative paths from the config's directory). */
export function stateDirOf(configPath: string): string {
  let config: { stateDir?: unknown };
  try {
    config = JSON.parse(readFileSync(configPath, "utf8")) as { stateDir?: unknown };
  } catch (err) {
    throw new DragnetError(
      Codes.CONFIG,
      `cannot read ${configPath}: ${(err as Error).message} (give --state-dir)`,
    );
  }
  if (typeof config.stateDir !== "string")
    throw new DragnetError(Codes.CONFIG, `${configPath} names no stateDir`);
  return isAbsolute(config.stateDir) ? config.stateDir : resolve(dirname(configPath), config.stateDir);
}

export function describeStatus(stateDir: string): string {
  let s: Record<string, unknown>;
  try {
    s = JSON.parse(readFileSync(join(stateDir, STATUS_FILE), "utf8")) as Record<string, unknown>;
  } catch {
    return `no agent status in ${stateDir}: the agent has not run here (or never reached its first heartbeat)\n`;
  }
  const age = Date.now() - Date.parse(String(s.lastHeartbeatAt));
  const running = isAlive(Number(s.pid)) && age < 3 * Number(s.heartbeatIntervalMs || 10_000);
  const undelivered = (s.undelivered ?? {}) as { results?: number; alerts?: number };
  const lines = [
    `agent       ${s.id} (${s.hostname}), version ${s.version}`,
    `process     ${running ? `running, pid ${s.pid}, since ${s.startedAt}` : `NOT RUNNING (last seen pid ${s.pid})`}`,
    `connection  ${s.connected ? `connected to ${s.server}` : `not connected${s.linkLostAt ? ` since ${s.linkLostAt}` : ""}`}`,
    `heartbeat   last ${s.lastHeartbeatAt} (${Math.round(age / 1000)} s ago), every ${Math.round(Number(s.heartbeatIntervalMs) / 1000)} s`,
    `isolation   ${s.isolated ? `ISOLATED since ${s.isolatedSince} by action ${s.isolationActionId}` : "not isolated"}`,
    ...(s.upgrade ? [`upgrade     ${s.upgrade}`] : []),
    `commands    ${s.runningCommands} running, ${s.queuedCommands ?? 0} waiting; undelivered: ${undelivered.results ?? 0} results, ${undelivered.alerts ?? 0} alerts`,
  ];
  return `${lines.join("\n")}\n`;
}
