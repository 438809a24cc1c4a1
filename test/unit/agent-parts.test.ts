import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { reconnectDelay } from "../../agent/agent.js";
import { ReplayGuard } from "../../agent/mod.js";
import { startWatchdogPings } from "../../agent/system-tools.js";
import { silentLogger } from "../../common/mod.js";
import { tempDir } from "../helpers/fleet.js";

describe("reconnect backoff", () => {
  it("grows with the outage, stays within 250 ms and 30 s, and is jittered", () => {
    expect(reconnectDelay(0, 1)).toBe(250);
    expect(reconnectDelay(0, 0)).toBe(125);
    expect(reconnectDelay(8000, 1)).toBe(2000);
    expect(reconnectDelay(8000, 0)).toBe(1000);
    expect(reconnectDelay(3_600_000, 1)).toBe(30_000);
    const spread = new Set(Array.from({ length: 50 }, () => reconnectDelay(60_000)));
    expect(spread.size).toBeGreaterThan(10);
  });
});

describe("replay guard", () => {
  it("remembers action ids across restarts until their actions expire, and compacts its file", () => {
    const file = join(tempDir(), "executed-actions");
    const now = 1_000_000;
    const g = new ReplayGuard(file, 0, now);
    g.remember("a", now + 10_000, "c1", "main", now);
    g.remember("b", now + 100, "c2", "main", now);
    g.finished("c2");
    expect(new ReplayGuard(file, 0, now).has("a")).toBe(true);
    const later = new ReplayGuard(file, 0, now + 1000);
    expect(later.has("a")).toBe(true);
    expect(later.has("b")).toBe(false);
    // Loading dropped the expired line from the file too.
    expect(readFileSync(file, "utf8")).toBe(`a ${now + 10_000} c1 main\n`);
    later.finished("c1");
    later.prune(now + 20_000);
    expect(later.size).toBe(0);
    expect(readFileSync(file, "utf8")).toBe("");
  });

  it("knows which accepted commands never produced a result, across restarts and compaction", () => {
    const file = join(tempDir(), "executed-actions");
    const now = 1_000_000;
    const g = new ReplayGuard(file, 0, now);
    g.remember("a", now + 10_000, "c1", "main", now);
    g.remember("b", now + 10_000, "c2", "main", now);
    g.finished("c1");
    expect(new ReplayGuard(file, 0, now).unfinished()).toEqual([
      { actionId: "b", commandId: "c2", coordinator: "main" },
    ]);
    new ReplayGuard(file, 0, now).prune(now); // compacts, keeping the done marks
    const again = new ReplayGuard(file, 0, now);
    expect(again.unfinished()).toEqual([{ actionId: "b", commandId: "c2", coordinator: "main" }]);
    again.finished("c2");
    expect(new ReplayGuard(file, 0, now).unfinished()).toEqual([]);
    expect(new ReplayGuard(file, 0, now).has("b")).toBe(true);
  });

  it("keeps an unfinished command however long past its action's expiry the agent was down, until it is reported", () => {
    const file = join(tempDir(), "executed-actions");
    const now = 1_000_000;
    new ReplayGuard(file, 60_000, now).remember("a", now + 10_000, "c1", "main", now);
    // Back an hour after the action expired: the command is still known to have been cut off.
    const back = new ReplayGuard(file, 60_000, now + 3_600_000);
    back.prune(now + 3_600_000);
    expect(back.unfinished()).toEqual([{ actionId: "a", commandId: "c1", coordinator: "main" }]);
    back.finished("c1");
    back.prune(now + 3_600_000);
    expect(back.size).toBe(0);
    expect(new ReplayGuard(file, 60_000, now + 3_600_000).unfinished()).toEqual([]);
  });
});

describe("the systemd watchdog", () => {
  it("tells systemd the agent lives (systemd-notify --pid=PID WATCHDOG=1) a third of each period, only when watched", async () => {
    const dir = tempDir();
    const calls = join(dir, "calls");
    const tool = join(dir, "systemd-notify");
    writeFileSync(tool, `#!/bin/sh\necho "$@" >> ${calls}\n`, { mode: 0o755 });
    const saved = { ...process.env };
    try {
      process.env.PATH = `${dir}:${saved.PATH}`;
      delete process.env.WATCHDOG_USEC;
      expect(startWatchdogPings(silentLogger)).toBeUndefined();
      Object.assign(process.env, { WATCHDOG_USEC: "3000000", NOTIFY_SOCKET: "/run/systemd/notify" });
      process.env.WATCHDOG_PID = String(process.pid + 1);
      // Another process is the one watched: not us.
      expect(startWatchdogPings(silentLogger)).toBeUndefined();
      process.env.WATCHDOG_PID = String(process.pid);
      const timer = startWatchdogPings(silentLogger);
      expect(timer).toBeDefined();
      // A 3 s period: pings at start and every second.
      await new Promise((r) => setTimeout(r, 2400));
      clearInterval(timer);
      await new Promise((r) => setTimeout(r, 100));
      const lines = readFileSync(calls, "utf8").trim().split("\n");
      expect(lines.length).toBeGreaterThanOrEqual(3);
      expect(new Set(lines)).toEqual(new Set([`--pid=${process.pid} WATCHDOG=1`]));
    } finally {
      process.env = saved;
    }
  });
});
