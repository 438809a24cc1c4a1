import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { type AskCoordinator, preciseClock, sampleClock } from "../../agent/modules/timedrift/clock.js";
import { timedriftModule } from "../../agent/modules/timedrift/index.js";
import { ntpState, parseChronycTracking, parseTimedatectl } from "../../agent/modules/timedrift/ntp-state.js";
import { Codes, silentLogger } from "../../common/mod.js";
import { importMigAction } from "../../console/mig-import.js";
import { goDurationMs } from "../../console/modules/timedrift.js";
import { TimeReply, TimeRequest } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// The timedrift module's arithmetic against a coordinator whose clock is off
// by a known amount and which answers after known delays (the real round trip
// through NATS is test/e2e/timedrift.test.ts); its NTP readers against
// timedatectl on this machine and against a test root; its check and MIG import.

const work = tempDir("dragnet-timedrift-");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * A coordinator whose clock is `skewMs` ahead of this host's: exchange i waits
 * delays[i] / 2 before reading its clock (in whole ms, as the coordinator
 * does) and as long again before answering.
 */
function skewedCoordinator(skewMs: (i: number) => number, delays: (i: number) => number) {
  const calls: string[] = [];
  const ask: AskCoordinator = async (topic, payload) => {
    const i = calls.length;
    calls.push(topic);
    expect(TimeRequest.decode(payload)).toEqual({});
    await sleep(delays(i) / 2);
    const coordinatorTimeMs = Date.now() + skewMs(i);
    await sleep(delays(i) / 2);
    return TimeReply.encode({ coordinatorTimeMs, problem: undefined }).finish();
  };
  return { ask, calls };
}

const ctxWith = (ask?: AskCoordinator) => ({
  signal: new AbortController().signal,
  log: silentLogger,
  stateDir: "/nonexistent",
  ask,
});

describe("timedrift: clock arithmetic", () => {
  it("a coordinator 5 s ahead gives an offset of -5 s, within half the round trip", async () => {
    const { ask, calls } = skewedCoordinator(
      () => 5000,
      () => 20,
    );
    const r = await sampleClock(ask, { samples: 5 });
    expect(calls).toEqual(["time", "time", "time", "time", "time"]);
    expect(r.samples).toBe(5);
    expect(r.rttMs).toBeGreaterThanOrEqual(19);
    // The coordinator read its clock half-way: the estimate's error is the
    // legs' difference (timer jitter), bounded by half the round trip plus
    // the coordinator clock's 1 ms resolution.
    expect(Math.abs(r.offsetMs - -5000)).toBeLessThanOrEqual(r.rttMs / 2 + 2);
  });

  it("an agent 3 s ahead of its coordinator gives +3 s", async () => {
    const { ask } = skewedCoordinator(
      () => -3000,
      () => 10,
    );
    const r = await sampleClock(ask, { samples: 3 });
    expect(Math.abs(r.offsetMs - 3000)).toBeLessThanOrEqual(r.rttMs / 2 + 2);
  });

  it("the fastest exchange counts: its offset, not the slow ones' nor an average", async () => {
    // The slow exchanges see a clock 9 s ahead, the fast one 5 s: only the fast one may count.
    const { ask } = skewedCoordinator(
      (i) => (i === 2 ? 5000 : 9000),
      (i) => (i === 2 ? 4 : 400),
    );
    const r = await sampleClock(ask, { samples: 5 });
    expect(r.samples).toBe(5);
    expect(r.rttMs).toBeLessThan(300);
    expect(Math.abs(r.offsetMs - -5000)).toBeLessThanOrEqual(r.rttMs / 2 + 2);
  });

  it("a silent coordinator: two failed exchanges and the run fails UNAVAILABLE; one failure is noted and passed over", async () => {
    let calls = 0;
    const silent: AskCoordinator = async () => {
      calls++;
      throw new Error("timeout");
    };
    await expect(sampleClock(silent, { samples: 5 })).rejects.toMatchObject({ code: Codes.UNAVAILABLE });
    expect(calls).toBe(2);
    const { ask } = skewedCoordinator(
      () => 0,
      () => 2,
    );
    let first = true;
    const flaky: AskCoordinator = (topic, payload, ms) => {
      if (first) {
        first = false;
        return Promise.reject(new Error("no responders"));
      }
      return ask(topic, payload, ms);
    };
    const r = await sampleClock(flaky, { samples: 5 });
    expect([r.samples, r.errors]).toEqual([4, ["exchange 1: no responders"]]);
  });

  it("a refusal from the coordinator fails the run with its reason", async () => {
    const refusing: AskCoordinator = async () =>
      TimeReply.encode({
        coordinatorTimeMs: 0,
        problem: { code: Codes.TOO_LARGE, message: "too big" },
      }).finish();
    await expect(sampleClock(refusing)).rejects.toThrow(
      /refused the time request \(DRAGNET_E_TOO_LARGE: too big\)/,
    );
  });

  it("the precise clock reads the wall clock, in steps finer than a millisecond", () => {
    const clock = preciseClock();
    const reads: number[] = [];
    for (let i = 0; i < 2000; i++) reads.push(clock());
    const before = Date.now();
    const now = clock();
    const after = Date.now();
    // Anchoring can only err early, by a descheduling at most (a loaded machine: a millisecond or so).
    expect(now).toBeGreaterThanOrEqual(before - 1.5);
    expect(now).toBeLessThan(after + 1.1);
    expect(reads.every((t, i) => i === 0 || t >= reads[i - 1]!)).toBe(true);
    expect(reads.some((t) => !Number.isInteger(t))).toBe(true);
  });
});

describe("timedrift: the module", () => {
  it("finds a clock past the threshold (default 2 s), and not one within it", async () => {
    const ahead = skewedCoordinator(
      () => -2600,
      () => 4,
    );
    const over = await timedriftModule.run({}, ctxWith(ahead.ask));
    expect(over.found).toBe(true);
    expect(over.result.maxDriftMs).toBe(2000);
    expect(Math.abs(over.result.offsetMs - 2600)).toBeLessThanOrEqual(over.result.rttMs / 2 + 1);
    expect(["synchronized", "unsynchronized", "unknown"]).toContain(over.result.ntp);
    expect(Math.abs(over.result.agentTimeMs - Date.now())).toBeLessThan(5000);
    const within = await timedriftModule.run({ maxDriftMs: 3000 }, ctxWith(ahead.ask));
    expect([within.found, within.result.maxDriftMs]).toEqual([false, 3000]);
  });

  it("refuses to run with no coordinator to ask, and refuses a threshold outside 1 ms … 1 day", async () => {
    await expect(timedriftModule.run({}, ctxWith())).rejects.toThrow(/no coordinator to compare with/);
    expect(() => timedriftModule.check({ maxDriftMs: 0 })).toThrow(/max drift is 1 ms to 86400000 ms/);
    expect(() => timedriftModule.check({ maxDriftMs: 86_400_001 })).toThrow(/max drift/);
    expect(() => timedriftModule.check({ maxDriftMs: 1 })).not.toThrow();
    expect(() => timedriftModule.check({})).not.toThrow();
  });
});

describe("timedrift: NTP state", () => {
  it("agrees with timedatectl on this machine (or, where it cannot answer, says why and does not claim its answer)", async () => {
    const theirs = spawnSync("timedatectl", ["show", "-p", "NTPSynchronized", "--value"], {
      encoding: "utf8",
    });
    const ours = await ntpState();
    if (theirs.error) {
      expect(ours.by).not.toBe("timedatectl"); // not installed
    } else if (theirs.status === 0) {
      expect([ours.by, ours.ntp]).toEqual([
        "timedatectl",
        theirs.stdout.trim() === "yes" ? "synchronized" : "unsynchronized",
      ]);
    } else {
      // As in a container without systemd: its own complaint, first line.
      expect(ours.by).not.toBe("timedatectl");
      expect(ours.errors).toContain(`timedatectl: ${theirs.stderr.trim().split("\n")[0]}`);
    }
  });

  it("reads timesyncd's flag file under a root, and says unknown when nothing says anything", async () => {
    const synced = join(work, "synced");
    mkdirSync(join(synced, "run/systemd/timesync"), { recursive: true });
    writeFileSync(join(synced, "run/systemd/timesync/synchronized"), "");
    expect(await ntpState({ root: synced })).toEqual({
      ntp: "synchronized",
      by: "timesyncd",
      source: "",
      errors: [],
    });
    const bare = join(work, "bare");
    mkdirSync(join(bare, "run/systemd/timesync"), { recursive: true });
    expect(await ntpState({ root: bare })).toEqual({ ntp: "unknown", by: "", source: "", errors: [] });
  });

  it("parses timedatectl's name=value lines in either order, and chronyc's CSV tracking line", () => {
    expect(parseTimedatectl("NTP=yes\nNTPSynchronized=yes\n")).toEqual({ ntp: "synchronized", source: "" });
    expect(parseTimedatectl("NTPSynchronized=no\nNTP=no\n")).toEqual({
      ntp: "unsynchronized",
      source: "none (NTP service off)",
    });
    expect(parseTimedatectl("Timezone=UTC\n")).toBeUndefined();
    // chronyc -c tracking: ref id, name, stratum, ref time, offsets…, leap status (chronyc(1)).
    expect(
      parseChronycTracking(
        "A9FEA97B,169.254.169.123,4,1700000000.123456789,-0.000001234,0.000002345,0.000003456,-12.345,0.001,0.045,0.000456123,0.000789456,64.2,Normal\n",
      ),
    ).toEqual({ ntp: "synchronized", source: "169.254.169.123" });
    expect(
      parseChronycTracking(
        "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,1.000000000,1.000000000,0.0,Not synchronised\n",
      ),
    ).toEqual({ ntp: "unsynchronized", source: "" });
    expect(
      parseChronycTracking(
        "7F7F0101,,10,1700000000.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,0.000000000,0.000000000,16.0,Normal\n",
      ),
    ).toEqual({ ntp: "synchronized", source: "local clock" });
    expect(parseChronycTracking("506 Cannot talk to daemon\n")).toBeUndefined();
  });
});

describe("timedrift: MIG import", () => {
  const mig = (parameters: unknown) =>
    importMigAction({ name: "clocks", operations: [{ module: "timedrift", parameters }] }, "clocks.json");

  it('MIG\'s "drift" (a Go duration) becomes max_drift_ms; no drift becomes the default; anything else is refused by name', () => {
    expect(mig({ drift: "5s" }).operations).toEqual([
      { module: { $case: "timedrift", value: { maxDriftMs: 5000 } } },
    ]);
    expect(mig({ drift: "1m30s" }).operations[0]!.module).toEqual({
      $case: "timedrift",
      value: { maxDriftMs: 90_000 },
    });
    const none = mig({});
    expect(none.operations[0]!.module).toEqual({ $case: "timedrift", value: { maxDriftMs: undefined } });
    expect(none.notes.join(" ")).toMatch(/no drift/);
    expect(() => mig({ drift: "5s", ntpservers: ["pool.ntp.org"] })).toThrow(
      /timedrift parameter "ntpservers" has no Dragnet equivalent/,
    );
    expect(() => mig({ drift: "five seconds" })).toThrow(/drift "five seconds" is not a duration/);
    expect(() => mig({ drift: "500us" })).toThrow(/outside what Dragnet measures/);
  });

  it("reads Go durations as time.ParseDuration does", () => {
    expect(goDurationMs("300ms")).toBe(300);
    expect(goDurationMs("1.5h")).toBe(5_400_000);
    expect(goDurationMs("2h45m")).toBe(9_900_000);
    expect(goDurationMs("1500us")).toBe(1.5);
    expect(goDurationMs(".5s")).toBe(500);
    expect(goDurationMs("5")).toBeUndefined();
    expect(goDurationMs("-5s")).toBeUndefined();
    expect(goDurationMs("")).toBeUndefined();
  });
});
