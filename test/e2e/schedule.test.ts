import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, signAction } from "../../common/mod.js";
import { runAt } from "../../common/schedule.js";
import {
  AckStatus,
  ActionBody,
  AgentStatus,
  CommandAck,
  CommandEnvelope,
  CommandStatus,
  KillParams,
  SignedAction,
} from "../../proto/api.js";
import { AGENT_EXE, dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// Signed schedules end to end: three real agent executables, each in its own
// mount namespace where one directory shows a host's own files, a schedule
// every 2 s searching it, and the coordinator as its own process. A file
// planted on one host between runs is one alert on that host only; removed,
// one more; no change, none. Runs replayed with the coordinator's own NATS
// credentials, or sent outside their window, are refused by the agents with
// the reason; a stopped schedule's runs too. The coordinator SIGKILLed
// between runs still issues the next run, once.

let fleet: TestFleet;
let home: string;
let tree: string;
let coordinator: ChildProcess;
const exes: ChildProcess[] = [];
const HOSTS = ["sched-a", "sched-b", "sched-c"];
const ids = new Map<string, string>();
/** Every command envelope of a run the coordinator sent, as an eavesdropper with its credentials sees them. */
const envelopes: Array<{ agentId: string; data: Uint8Array; envelope: CommandEnvelope }> = [];
/** Reads command and ack subjects (an eavesdropper); `stolen` publishes with the coordinator's own credentials. */
let spy: NatsConnection;
let stolen: NatsConnection;
let scheduleId = "";

const cli = (args: string[]) => dragnet(["--home", home, ...args]);
const view = () => join(tree, "view");

/** An agent executable whose `view` directory is its own host's directory (a bind mount in its own namespace). */
async function startAgent(hostname: string): Promise<void> {
  const state = tempDir(`dragnet-sched-${hostname}-`);
  const own = join(tree, hostname);
  mkdirSync(own, { recursive: true });
  const flags = [
    ...(await fleet.agentExeFlags(state)),
    ...["--keyring", fleet.keyringPath, "--hostname", hostname, "--heartbeat-interval", "500"],
  ];
  const child = spawn(
    "/usr/bin/unshare",
    [
      "-m",
      "--propagation",
      "private",
      "/bin/sh",
      "-c",
      'mount --bind "$0" "$1" && shift && exec "$@"',
      own,
      view(),
      AGENT_EXE,
      ...flags,
    ],
    { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, stdio: ["ignore", "ignore", "ignore"] },
  );
  exes.push(child);
  const agent = await eventually(async () => {
    const agents = await fleet.api.listAgents(`hostname == "${hostname}"`);
    return agents.find((a) => a.status === AgentStatus.AGENT_STATUS_ONLINE);
  }, 20_000);
  ids.set(hostname, agent.id);
}

interface AlertJson {
  hostname: string;
  scheduleId?: string;
  run?: number;
  rows?: Array<{ vanished?: boolean; module: string; row: string }>;
}

async function scheduleAlerts(): Promise<AlertJson[]> {
  const r = await cli(["--json", "alerts", "--since", "1h", "--limit", "1000"]);
  // 1: no alert at all.
  expect([0, 1], r.stderr).toContain(r.code);
  return (ndjson(r.stdout) as unknown as AlertJson[]).filter((a) => a.scheduleId === scheduleId);
}

interface RunJson {
  run: number;
  actionId: string;
  targeted: number;
  compared?: number;
  baselines?: number;
  changed?: number;
  added?: number;
  vanished?: number;
}

async function runs(): Promise<RunJson[]> {
  const r = await cli(["--json", "schedule", "show", scheduleId]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { runs: RunJson[] }).runs;
}

/** Waits until a run issued after `afterRun` has been compared on every host; returns it. */
async function nextComparedRun(afterRun: number): Promise<RunJson> {
  return eventually(async () => {
    const all = await runs();
    return all.find((r) => r.run > afterRun && (r.compared ?? 0) + (r.baselines ?? 0) === HOSTS.length);
  }, 20_000);
}

/** The acknowledgement an agent sends when it judges a command, caught on the coordinator's ack subject. */
async function ackOf(agentId: string, publish: () => void): Promise<CommandAck> {
  const sub = spy.subscribe(`${fleet.coordinator.subjects.prefix}.ack.${agentId}.>`);
  const got = (async () => {
    for await (const m of sub) {
      const ack = CommandAck.decode(m.data);
      if (ack.status === AckStatus.ACK_STATUS_REJECTED) return ack;
    }
    throw new Error("no rejection");
  })();
  await spy.flush();
  publish();
  const timer = setTimeout(() => sub.unsubscribe(), 10_000);
  try {
    return await got;
  } finally {
    clearTimeout(timer);
    sub.unsubscribe();
  }
}

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 0 });
  home = fleet.consoleHome();
  tree = tempDir("dragnet-sched-tree-");
  mkdirSync(view());
  coordinator = await fleet.spawnCoordinator();
  for (const h of HOSTS) await startAgent(h);
  const prefix = fleet.coordinator.subjects.prefix;
  spy = await fleet.connectNats({ observe: [`${prefix}.cmd.*`, `${prefix}.ack.>`] });
  stolen = await fleet.connectNats("coordinator");
  spy.subscribe(`${fleet.coordinator.subjects.prefix}.cmd.*`, {
    callback: (err, m) => {
      if (err) throw err;
      const envelope = CommandEnvelope.decode(m.data);
      if (envelope.run) envelopes.push({ agentId: m.subject.split(".").at(-1)!, data: m.data, envelope });
    },
  });
  await spy.flush();
}, 90_000);

afterAll(async () => {
  await spy?.close();
  await stolen?.close();
  for (const c of exes) c.kill("SIGTERM");
  coordinator?.kill("SIGTERM");
  await fleet?.stop();
});

describe("a signed schedule", () => {
  it("refuses response modules in the console, before signing", async () => {
    const r = await cli([
      "schedule",
      "create",
      "--every",
      "2s",
      "--name",
      "isolate-hourly",
      "isolate",
      "-t",
      "all",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("response modules cannot be scheduled");
  });

  it("runs every 2 s on every host; a planted file is one alert on that host, its removal one more", async () => {
    const created = await cli([
      "--json",
      "schedule",
      "create",
      "--every",
      "2s",
      "--for",
      "5m",
      "--name",
      "webshells",
      "file",
      "-t",
      "all",
      "--path",
      view(),
      "--name",
      "\\.php$",
    ]);
    expect(created.code, created.stderr).toBe(0);
    scheduleId = (JSON.parse(created.stdout) as { schedule: string }).schedule;
    // Run 1 is every host's baseline; the next run compares and finds nothing new.
    const quiet = await nextComparedRun(1);
    expect(quiet.changed ?? 0).toBe(0);
    expect(await scheduleAlerts()).toEqual([]);

    writeFileSync(join(tree, "sched-b", "shell.php"), "<?php system($_GET['c']); ?>\n");
    const planted = await eventually(async () => {
      const alerts = await scheduleAlerts();
      return alerts.length > 0 ? alerts : undefined;
    }, 20_000);
    // Two more runs: still the same one alert (the file is still there, nothing changed since).
    const after = await nextComparedRun(planted[0]!.run!);
    await nextComparedRun(after.run);
    const alerts = await scheduleAlerts();
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.hostname).toBe("sched-b");
    expect(alerts[0]!.rows).toHaveLength(1);
    expect(alerts[0]!.rows![0]!.vanished ?? false).toBe(false);
    expect(alerts[0]!.rows![0]!.row).toContain(join(view(), "shell.php"));

    rmSync(join(tree, "sched-b", "shell.php"));
    const removed = await eventually(async () => {
      const all = await scheduleAlerts();
      return all.length > 1 ? all : undefined;
    }, 20_000);
    const last = await nextComparedRun(removed[1]!.run!);
    await nextComparedRun(last.run);
    const final = await scheduleAlerts();
    expect(final).toHaveLength(2);
    const gone = final.find((a) => a.run !== alerts[0]!.run)!;
    expect(gone.hostname).toBe("sched-b");
    expect(gone.rows!.map((r) => [r.vanished, r.row.includes("shell.php")])).toEqual([[true, true]]);
    // Each run an action of its own, with its page.
    const show = await cli(["--json", "action", "show", last.actionId]);
    // 1: the run found nothing (the file is gone).
    expect(show.code, show.stderr).toBe(1);
    const answers = ndjson(show.stdout) as Array<{ agent: { hostname: string }; status: string }>;
    expect(answers.map((a) => `${a.agent.hostname} ${a.status}`).sort()).toEqual(
      HOSTS.map((h) => `${h} success`),
    );
    const list = await cli(["action", "list"]);
    expect(list.stdout).toContain(`webshells #${last.run}`);
  }, 120_000);

  it("refuses a replayed run and a run outside its window, saying why", async () => {
    const agentId = ids.get("sched-a")!;
    const old = envelopes.find((e) => e.agentId === agentId && e.envelope.run === 1)!;
    expect(old).toBeDefined();
    // Run 1's window is long over: published again with the coordinator's credentials, it is refused.
    const expired = await ackOf(agentId, () =>
      stolen.publish(`${fleet.coordinator.subjects.prefix}.cmd.${agentId}`, old.data),
    );
    expect(expired.problem?.code).toBe("DRAGNET_E_EXPIRED");
    expect(expired.problem?.message).toContain("run 1 of schedule");

    // The run that ran last, sent again inside its own window (a fresh command id): it never runs twice.
    const schedule = ActionBody.decode(old.envelope.action!.body);
    const current = runAt(schedule, Date.now());
    const latest = await eventually(() => {
      const e = envelopes.find(
        (x) => x.agentId === agentId && x.envelope.run === runAt(schedule, Date.now()),
      );
      return e;
    }, 10_000);
    const again = CommandEnvelope.encode({ ...latest.envelope, commandId: "replayed-run" }).finish();
    const replay = await ackOf(agentId, () =>
      stolen.publish(`${fleet.coordinator.subjects.prefix}.cmd.${agentId}`, again),
    );
    expect(["DRAGNET_E_REPLAY", "DRAGNET_E_EXPIRED"]).toContain(replay.problem?.code);
    if (replay.problem?.code === "DRAGNET_E_REPLAY") expect(replay.problem.message).toContain("already ran");

    // A run whose window has not come: a compromised coordinator cannot run the schedule more often.
    const early = CommandEnvelope.encode({
      ...old.envelope,
      commandId: "early-run",
      run: current + 3,
    }).finish();
    const tooEarly = await ackOf(agentId, () =>
      stolen.publish(`${fleet.coordinator.subjects.prefix}.cmd.${agentId}`, early),
    );
    expect(tooEarly.problem?.code).toBe("DRAGNET_E_NOT_YET_VALID");
    expect(tooEarly.problem?.message).toMatch(/may start only between/);

    // Other operations than were signed: the bytes no longer match the signature.
    const forged = Buffer.from(ActionBody.encode({ ...schedule, target: "all", name: "forged" }).finish());
    const tampered = CommandEnvelope.encode({
      ...latest.envelope,
      commandId: "tampered-run",
      action: { ...latest.envelope.action!, body: forged },
    }).finish();
    const refused = await ackOf(agentId, () =>
      stolen.publish(`${fleet.coordinator.subjects.prefix}.cmd.${agentId}`, tampered),
    );
    expect(refused.problem?.code).toBe("DRAGNET_E_SIG_INVALID");
  }, 60_000);

  it("refuses, on the agent, a signed schedule holding a response module", async () => {
    const agentId = ids.get("sched-c")!;
    const now = Date.now();
    const body: ActionBody = {
      id: newId(),
      name: "kill every minute",
      target: "all",
      operations: [{ module: { $case: "kill", value: KillParams.fromPartial({ pid: 1 }) } }],
      validFromMs: now - 1000,
      expiresAtMs: now - 1000 + 60_000,
      timeoutMs: 10_000,
      incidentId: "",
      description: "",
      createdAtMs: now,
      schedule: { everyMs: 60_000, runs: 1 },
    };
    const signed = signAction(body, fleet.alice);
    const data = CommandEnvelope.encode({
      commandId: "scheduled-kill",
      action: SignedAction.fromPartial(signed),
      sentAtMs: now,
      coordinator: "main",
      run: 1,
      stop: undefined,
    }).finish();
    const ack = await ackOf(agentId, () =>
      stolen.publish(`${fleet.coordinator.subjects.prefix}.cmd.${agentId}`, data),
    );
    expect(ack.problem?.code).toBe("DRAGNET_E_ACTION_INVALID");
    expect(ack.problem?.message).toContain("response modules cannot be scheduled");
  }, 30_000);

  it("issues the next run, once, after the coordinator is SIGKILLed between runs", async () => {
    const before = await runs();
    const lastBefore = before.at(-1)!.run;
    coordinator.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
    coordinator = await fleet.spawnCoordinator();
    const next = await nextComparedRun(lastBefore);
    const all = await runs();
    // Each run number once, increasing; runs whose windows passed while it was down are not made up.
    const numbers = all.map((r) => r.run);
    expect(new Set(numbers).size).toBe(numbers.length);
    expect([...numbers].sort((a, b) => a - b)).toEqual(numbers);
    // One command per host, each answered once.
    const detail = await fleet.api.getAction(next.actionId, true);
    expect(detail.results.map((r) => r.agentId).sort()).toEqual([...ids.values()].sort());
    expect(detail.results.every((r) => r.status === CommandStatus.COMMAND_STATUS_SUCCESS)).toBe(true);
  }, 60_000);

  it("stops: no more runs, and agents that heard of the stop refuse the schedule's runs", async () => {
    const stopped = await cli(["--json", "schedule", "stop", scheduleId, "--reason", "indicator cleared"]);
    expect(stopped.code, stopped.stderr).toBe(0);
    const lastRun = (JSON.parse(stopped.stdout) as { lastRun: number }).lastRun;
    const agentId = ids.get("sched-a")!;
    const any = envelopes.find((e) => e.agentId === agentId)!;
    const schedule = ActionBody.decode(any.envelope.action!.body);
    // The run of the window open now, as a compromised coordinator would send it.
    const run = runAt(schedule, Date.now());
    const data = CommandEnvelope.encode({ ...any.envelope, commandId: "after-stop", run }).finish();
    const ack = await eventually(async () => {
      const a = await ackOf(agentId, () =>
        stolen.publish(`${fleet.coordinator.subjects.prefix}.cmd.${agentId}`, data),
      );
      return a.problem?.code === "DRAGNET_E_SCHEDULE" ? a : undefined;
    }, 10_000);
    expect(ack.problem?.message).toContain("was stopped by alice");
    await new Promise((r) => setTimeout(r, 4500));
    const after = await runs();
    expect(after.at(-1)!.run).toBeLessThanOrEqual(lastRun);
    const list = await cli(["--json", "schedule", "list"]);
    expect(list.stdout).toContain('"state":"stopped"');
  }, 40_000);
});
