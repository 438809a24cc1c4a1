import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { CommandResult, CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// A long file search must not stall the agent: it runs on search worker
// threads, so heartbeats keep flowing and a second command is answered while
// the first is still hashing. An answer too large for one NATS message
// arrives cut, and says so.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet({ agents: 1, heartbeatIntervalMs: 250 });
  await eventually(async () => ((await fleet.api.listAgents()).length === 1 ? true : undefined));
});

afterAll(async () => {
  await fleet?.stop();
});

describe("an agent busy with a long file search", () => {
  it("keeps heartbeating and answers another command before the search ends", async () => {
    const hb = await fleet.connectNats({ observe: ["dragnet.hb.*"] });
    const beats: number[] = [];
    hb.subscribe("dragnet.hb.*", {
      callback: () => {
        beats.push(Date.now());
      },
    });
    await hb.flush();

    // Hash every file under /usr/lib (matching none): seconds of work on any machine.
    const long = fileAction(
      { paths: ["/usr/lib"], sha256: ["00".repeat(32)], options: { matchLimit: 1_000_000 } },
      { timeoutMs: 120_000 },
    );
    const longStarted = Date.now();
    await fleet.api.submitAction(signAction(long, fleet.alice));
    const longDone = collectResults(fleet.api, long.id).then((r) => ({ ...r, at: Date.now() }));
    // The scan runs on threads 10 nice levels below the rest of the agent (here, this process).
    // Waited for, not looked at once: on a loaded machine the workers start later.
    const niceOf = (task: string) => {
      try {
        return Number(readFileSync(`/proc/self/task/${task}/stat`, "utf8").split(") ")[1]!.split(" ")[16]);
      } catch {
        return Number.NaN; // the thread ended meanwhile
      }
    };
    await eventually(
      () => (readdirSync("/proc/self/task").map(niceOf).includes(10) ? true : undefined),
      15_000,
    );
    expect(niceOf(String(process.pid))).toBe(0);

    const quick = fileAction({ paths: ["/etc/hostname"] });
    const quickStarted = Date.now();
    await fleet.api.submitAction(signAction(quick, fleet.alice));
    const quickResult = await collectResults(fleet.api, quick.id);
    const quickAt = Date.now();
    expect(quickResult.results).toHaveLength(1);
    expect(quickAt - quickStarted).toBeLessThan(2000);

    const longResult = await longDone;
    // The quick command really overlapped the long one.
    expect(longResult.at).toBeGreaterThan(quickAt);
    const busyMs = longResult.at - longStarted;
    expect(busyMs).toBeGreaterThan(2000);
    const file = longResult.results[0]!.result!.operations[0]!.module;
    expect(file?.$case === "file" && file.value.stats!.filesRead).toBeGreaterThan(1000);
    // Heartbeats every 250 ms all along: no gap of a second while the search ran.
    const during = beats.filter((t) => t >= longStarted && t <= longResult.at);
    const gaps = during.slice(1).map((t, i) => t - during[i]!);
    expect(during.length).toBeGreaterThan(busyMs / 250 / 2);
    expect(Math.max(...gaps)).toBeLessThan(1000);
    await hb.close();
  }, 120_000);

  it("cuts an answer over NATS' 1 MiB and says so: truncated, with the count of what was left out", async () => {
    // Every file under /usr by name: tens of thousands of matches, several MiB.
    const all = fileAction(
      { paths: ["/usr"], names: ["."], options: { matchLimit: 1_000_000 } },
      { timeoutMs: 120_000 },
    );
    await fleet.api.submitAction(signAction(all, fleet.alice));
    const { results } = await collectResults(fleet.api, all.id);
    const result = results[0]!.result!;
    expect([result.status, result.problem]).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS, undefined]);
    const op = result.operations[0]!;
    const file = op.module?.$case === "file" ? op.module.value : undefined;
    expect(file!.stats!.matches).toBeGreaterThan(20_000);
    expect(op.truncated).toBe(true);
    // What arrived and what was cut add up to what the search matched.
    expect(file!.matches.length + op.omitted).toBe(file!.stats!.matches);
    expect(file!.matches.length).toBeGreaterThan(1000);
    expect(CommandResult.encode(result).finish().length).toBeLessThanOrEqual(1024 * 1024);
  }, 150_000);
});
