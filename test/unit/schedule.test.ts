import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  generateInvestigatorKey,
  isId,
  Keyring,
  newId,
  publicEntryOf,
  signAction,
  signBytes,
  verifySignedAction,
} from "../../common/mod.js";
import { rowHeadline } from "../../common/row-headline.js";
import {
  checkRunWindow,
  checkSchedule,
  runActionId,
  runAt,
  runBody,
  signScheduleStop,
  verifyScheduleStop,
} from "../../common/schedule.js";
import { checkAlert } from "../../coordinator/alert-book.js";
import { answerRows, diffRows } from "../../coordinator/schedule-rows.js";
import { SqliteStore } from "../../coordinator/store/sqlite-store.js";
import { emptyWriteBatch } from "../../coordinator/store/store.js";
import {
  type ActionBody,
  ActionState,
  Alert,
  CommandResult,
  CommandStatus,
  EvidenceItem,
  type OperationResult,
  ProcessParams,
} from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// The parts of signed schedules and exports that need no fleet: how runs are
// derived and bounded, how answers become rows and are compared, how the
// store claims a run once, and what the export log reads for each kind.

const T0 = Date.UTC(2026, 11, 5, 12, 0, 0);

function schedule(overrides: Partial<ActionBody> = {}): ActionBody {
  return {
    id: newId(T0),
    name: "webshells",
    target: "all",
    operations: [{ module: { $case: "process", value: ProcessParams.fromPartial({ name: "^sshd$" }) } }],
    validFromMs: T0,
    expiresAtMs: T0 + 10 * 60_000,
    timeoutMs: 30_000,
    incidentId: "",
    description: "",
    createdAtMs: T0,
    schedule: { everyMs: 60_000, runs: 10 },
    ...overrides,
  };
}

describe("schedule runs", () => {
  it("derive run n's id and window from the schedule alone, the same every time", () => {
    const s = schedule();
    const run3 = runBody(s, 3);
    expect(run3.validFromMs).toBe(T0 + 2 * 60_000);
    expect(run3.expiresAtMs).toBe(T0 + 3 * 60_000);
    expect(run3.name).toBe("webshells #3");
    expect(run3.schedule).toBeUndefined();
    expect(isId(run3.id)).toBe(true);
    expect(runBody(s, 3).id).toBe(run3.id);
    expect(new Set([1, 2, 3, 4].map((n) => runBody(s, n).id)).size).toBe(4);
    // Another schedule's run 3 is another action.
    expect(runActionId(newId(T0), 3, run3.validFromMs)).not.toBe(run3.id);
    // Ids sort by the run's start, like every Dragnet id.
    expect(runBody(s, 2).id < run3.id).toBe(true);
    expect(() => runBody(s, 11)).toThrow(/runs 1 to 10; there is no run 11/);
    expect(() => runBody(s, 0)).toThrow(/no run 0/);
  });

  it("know which run's window holds a time, and refuse a run outside its own", () => {
    const s = schedule();
    expect(runAt(s, T0 - 1)).toBe(0);
    expect(runAt(s, T0)).toBe(1);
    expect(runAt(s, T0 + 60_000)).toBe(2);
    expect(runAt(s, T0 + 10 * 60_000)).toBe(11);
    expect(() => checkRunWindow(s, 2, T0 + 90_000, 0)).not.toThrow();
    expect(() => checkRunWindow(s, 2, T0 + 30_000, 0)).toThrow(/may start only between/);
    expect(() => checkRunWindow(s, 2, T0 + 120_000, 0)).toThrow(/window is over/);
    // Within the clock tolerance on either side.
    expect(() => checkRunWindow(s, 2, T0 + 59_000, 2000)).not.toThrow();
    expect(() => checkRunWindow(s, 2, T0 + 121_000, 2000)).not.toThrow();
  });

  it("refuses malformed schedules: interval, runs, window, longer than 30 days, response modules", () => {
    expect(() => checkSchedule(schedule())).not.toThrow();
    expect(() => checkSchedule(schedule({ schedule: { everyMs: 500, runs: 10 } }))).toThrow(/once a second/);
    expect(() => checkSchedule(schedule({ schedule: { everyMs: 60_000, runs: 0 } }))).toThrow(/no run/);
    expect(() => checkSchedule(schedule({ expiresAtMs: T0 + 11 * 60_000 }))).toThrow(/exactly its runs/);
    const long = schedule({ schedule: { everyMs: 86_400_000, runs: 31 }, expiresAtMs: T0 + 31 * 86_400_000 });
    expect(() => checkSchedule(long)).toThrow(/more than 30 days/);
    const kill = schedule({ operations: [{ module: { $case: "kill", value: { pid: 1 } as never } }] });
    expect(() => checkSchedule(kill)).toThrow(/response modules cannot be scheduled/);
  });

  it("signs a stop that only the keyring's investigators can make", () => {
    const alice = generateInvestigatorKey("alice");
    const mallory = generateInvestigatorKey("mallory");
    const ring = Keyring.fromJson({ investigators: [publicEntryOf(alice)] });
    const body = { scheduleId: newId(), stoppedAtMs: T0, untilMs: T0 + 60_000, reason: "cleared" };
    expect(verifyScheduleStop(signScheduleStop(body, alice), ring).signer.name).toBe("alice");
    expect(() => verifyScheduleStop(signScheduleStop(body, mallory), ring)).toThrow(/unknown key/);
    const stop = signScheduleStop(body, alice);
    stop.body = Buffer.from(stop.body);
    stop.body[2] ^= 1;
    expect(() => verifyScheduleStop(stop, ring)).toThrow(/does not match/);
    // A signature over an action is not a stop (another signing context).
    const action = signAction(schedule(), alice);
    expect(() => verifyScheduleStop({ body: action.body, signature: action.signatures[0] }, ring)).toThrow(
      /does not match/,
    );
  });
});

describe("a schedule's signature", () => {
  it("is made in a context of its own: an action's signature over a schedule's bytes does not verify", () => {
    const alice = generateInvestigatorKey("alice");
    const ring = Keyring.fromJson({ investigators: [publicEntryOf(alice)] });
    const signed = signAction(schedule(), alice);
    expect(verifySignedAction(signed, ring).body.schedule?.runs).toBe(10);
    // What an agent from before schedules checks (the action context) refuses it.
    const asAction = { body: signed.body, signatures: [signBytes(signed.body, alice)] };
    expect(() => verifySignedAction(asAction, ring)).toThrow(/does not match/);
    // And a plain action signed in the schedule context does not verify as an action.
    const plain = signAction({ ...schedule(), schedule: undefined }, alice);
    const inScheduleContext = { body: plain.body, signatures: [signBytes(plain.body, alice, true)] };
    expect(() => verifySignedAction(inScheduleContext, ring)).toThrow(/does not match/);
  });

  it("is the coordinator's alone to raise: an agent's alert claiming a schedule is refused", () => {
    const alert = Alert.fromPartial({
      id: newId(),
      agentId: "a1",
      source: "schedule",
      watch: "w",
      scheduleId: newId(),
      run: 2,
      rows: [{ vanished: false, module: "file", row: "x" }],
    });
    expect(() => checkAlert(alert, "a1", `dragnet.alert.a1.${alert.id}`)).toThrow(
      /comes from the coordinator/,
    );
  });
});

describe("answer rows", () => {
  const proc = (pid: number, name: string, rss: number): OperationResult =>
    ({
      found: true,
      durationMs: 5,
      truncated: false,
      omitted: 0,
      module: {
        $case: "process",
        value: {
          processes: [
            {
              pid,
              ppid: 1,
              uid: 0,
              user: "root",
              name,
              cmdline: name,
              exe: `/usr/bin/${name}`,
              rssBytes: rss,
              state: "S",
            },
          ],
          scanned: 100 + rss,
          errors: [],
        },
      },
    }) as never;

  it("ignore what changes every run (memory, state, counts) and see what does not", () => {
    const before = answerRows([proc(10, "sshd", 1000)]).rows;
    expect(before).toHaveLength(1);
    expect(answerRows([proc(10, "sshd", 99_999)]).rows).toEqual(before);
    const after = answerRows([proc(10, "sshd", 5), proc(66, "nc", 7)]).rows;
    const { added, vanished } = diffRows(before, after);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/^process\.processes .*"name":"nc"/);
    expect(vanished).toEqual([]);
    expect(diffRows(after, before)).toEqual({ added: [], vanished: added });
    expect(answerRows([proc(10, "sshd", 1)]).partial).toBe(false);
  });

  it("call an answer with errors or cut by a module's limit partial (what is missing did not vanish)", () => {
    const withError = proc(10, "sshd", 1);
    (withError.module!.value as { errors: string[] }).errors.push("/proc/77: permission denied");
    expect(answerRows([withError]).partial).toBe(true);
    const cut = {
      found: true,
      module: { $case: "file", value: { matches: [], errors: [], warnings: [], stats: { truncated: true } } },
    } as never;
    expect(answerRows([cut]).partial).toBe(true);
  });
});

describe("a row's headline", () => {
  it("names the thing: a path, a package and its version, a socket, else the row cut short", () => {
    expect(rowHeadline('file.matches {"mode":"-rw-r--r--","path":"/var/www/x.php","size":29}')).toBe(
      "file.matches: /var/www/x.php",
    );
    expect(rowHeadline('pkg.packages {"manager":"dpkg","name":"openssl","version":"3.0.15-1"}')).toBe(
      "pkg.packages: openssl 3.0.15-1",
    );
    expect(
      rowHeadline('netstat.sockets {"localIp":"0.0.0.0","localPort":4444,"proto":"tcp","state":"LISTEN"}'),
    ).toBe("netstat.sockets: tcp 0.0.0.0:4444");
    expect(rowHeadline('ping {"found":true,"state":"open"}')).toBe('ping {"found":true,"state":"open"}');
    expect(rowHeadline("not json at all")).toBe("not json at all");
  });
});

describe("the store's schedules and export log", () => {
  it("claims each run once, keeps each host's latest rows, and tallies the run", async () => {
    const store = new SqliteStore(join(tempDir(), "s.db"));
    const id = newId();
    await store.schedules.put({
      id,
      name: "s",
      target: "all",
      signed: Buffer.from([1]),
      signerNames: ["alice"],
      modules: ["process"],
      incidentId: "",
      everyMs: 60_000,
      runs: 10,
      firstRunAtMs: T0,
      endsAtMs: T0 + 600_000,
      submittedAtMs: T0,
      lastRun: 0,
      stoppedBy: "",
      stopReason: "",
    });
    const run = (n: number) => ({
      scheduleId: id,
      run: n,
      actionId: newId(),
      issuedAtMs: T0,
      targeted: 2,
      compared: 0,
      baselines: 0,
      changed: 0,
      added: 0,
      vanished: 0,
      failed: 0,
    });
    expect(await store.schedules.claimRun(run(1))).toBe(true);
    expect(await store.schedules.claimRun(run(1))).toBe(false); // a second coordinator, or a restart
    expect(await store.schedules.claimRun(run(3))).toBe(true);
    expect(await store.schedules.claimRun(run(2))).toBe(false); // runs only go forward
    await store.schedules.recordAnswer(id, "a1", 3, ["x", "y"], { compared: 1, changed: 1, added: 1 });
    await store.schedules.recordAnswer(id, "a1", 1, ["old"], {}); // a late answer of an older run
    expect(await store.schedules.lastRows(id, "a1")).toEqual({ run: 3, rows: ["x", "y"] });
    const r3 = (await store.schedules.run(id, 3))!;
    expect([r3.compared, r3.changed, r3.added]).toEqual([1, 1, 1]);
    expect(await store.schedules.stop(id, T0 + 1, "alice", "done", Buffer.from([2]))).toBe(true);
    expect(await store.schedules.stop(id, T0 + 2, "bob", "again", Buffer.from([3]))).toBe(false);
    expect(await store.schedules.claimRun(run(4))).toBe(false); // stopped
    expect(await store.schedules.active(T0)).toEqual([]);
    await store.close();
  });

  it("reads every kind in the order stored, with stable ids, and keeps each sink's cursor", async () => {
    const store = new SqliteStore(join(tempDir(), "e.db"));
    const log = store.exportLog;
    const alert = Alert.fromPartial({
      id: newId(),
      agentId: "a1",
      hostname: "web-1",
      atMs: T0,
      source: "drift",
      watch: "etc",
      changes: [{ path: "/etc/x", kind: "added" }],
    });
    const evidence = EvidenceItem.fromPartial({ id: newId(), agentId: "a1", path: "/var/log/auth.log" });
    const batch = emptyWriteBatch();
    batch.alerts.push({
      id: alert.id,
      agentId: "a1",
      atMs: T0,
      receivedAtMs: T0,
      payload: Alert.encode(alert).finish(),
    });
    batch.evidence.push({
      id: evidence.id,
      agentId: "a1",
      incidentId: "",
      receivedAtMs: T0,
      payload: EvidenceItem.encode(evidence).finish(),
    });
    batch.actions.push({
      id: "01m8aaaaaaaaaaaaaaaaaaaaaa",
      name: "find x",
      target: "all",
      signed: Buffer.from([1]),
      signerKeyIds: [],
      signerNames: [],
      modules: ["file"],
      incidentId: "",
      createdAtMs: T0,
      validFromMs: T0,
      expiresAtMs: T0 + 1,
      submittedAtMs: T0,
      timeoutMs: 1,
      state: ActionState.ACTION_STATE_RELEASED,
      weight: 1,
      requiredWeight: 0,
    });
    batch.commands.push({
      id: "c1",
      actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
      agentId: "a1",
      status: CommandStatus.COMMAND_STATUS_SUCCESS,
      problemCode: "",
      problemMessage: "",
      found: true,
      createdAtMs: T0,
      sentAtMs: T0,
      ackedAtMs: T0,
      updatedAtMs: T0,
    });
    const result = CommandResult.fromPartial({
      commandId: "c1",
      actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
      agentId: "a1",
      status: CommandStatus.COMMAND_STATUS_SUCCESS,
      found: true,
    });
    batch.results.push({
      commandId: "c1",
      actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
      agentId: "a1",
      found: true,
      payload: CommandResult.encode(result).finish(),
      receivedAtMs: T0,
    });
    await store.apply(batch);
    const [r] = await log.read("results", 0, 10);
    expect(r!.record.id).toBe("result:c1");
    expect(r!.record.message).toBe("find x on a1: success, found");
    expect(r!.record.data.commandId).toBe("c1");
    expect((await log.read("alerts", 0, 10)).map((x) => x.record.id)).toEqual([`alert:a1:${alert.id}`]);
    expect((await log.read("alerts", 0, 10))[0]!.record.message).toBe("drift watch etc on web-1: 1 change");
    expect((await log.read("evidence", 0, 10)).map((x) => x.record.id)).toEqual([`evidence:${evidence.id}`]);
    expect(await log.latest("results")).toBe(r!.seq);
    expect(await log.read("results", r!.seq, 10)).toEqual([]);
    expect(await log.cursor("siem", "results")).toBe(0);
    await log.saveCursor("siem", "results", r!.seq);
    await log.saveCursor("siem", "results", 0); // a cursor never goes back
    expect(await log.cursor("siem", "results")).toBe(r!.seq);
    expect(await log.cursor("other", "results")).toBe(0);
    await store.close();
  });
});
