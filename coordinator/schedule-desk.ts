import {
  Codes,
  DragnetError,
  evaluateTarget,
  isId,
  newId,
  parseTarget,
  problemOf,
  roleToSign,
  type TrustedInvestigator,
} from "../common/mod.js";
import {
  checkSchedule,
  MAX_SCHEDULE_LEAD_MS,
  runAt,
  runBody,
  runWindow,
  verifyScheduleStop,
} from "../common/schedule.js";
import {
  ActionBody,
  ActionState,
  type Alert,
  CommandEnvelope,
  type CommandResult,
  CommandStatus,
  type ScheduleDetail,
  type ScheduleInfo,
  SignedAction,
  SignedScheduleStop,
} from "../proto/api.js";
import type { OpenAction } from "./action-book.js";
import { vetAction } from "./action-vetting.js";
import type { AlertBook } from "./alert-book.js";
import { actionRecordOf, type CoordinatorCore } from "./core.js";
import type { Dispatcher } from "./dispatch.js";
import { resolvePrefix } from "./id-prefix.js";
import type { Queries } from "./queries.js";
import { answerRows, diffRows, MAX_ROWS } from "./schedule-rows.js";
import { NO_TALLY, type RunTally, type StoredAgent, type StoredSchedule } from "./store/store.js";

// Signed schedules on the coordinator's side: stored before anything is sent,
// then run n issued as an action of its own (the signed schedule and n go to
// each agent, which derives and checks the run itself) when n's window opens.
// Each host's answer is compared with its previous run's: rows that appeared
// or vanished become one alert for that host, in the same store and stream as
// the drift watches' alerts. Runs missed while the coordinator was down are
// not made up: only the run whose window is open is sent, and hosts offline
// for it catch up while the window lasts (the run's expiry), no later.

const TICK_MS = 250;
/** A schedule may be created this long before its first run. */
const MAX_LEAD_MS = MAX_SCHEDULE_LEAD_MS;
/** Runs `schedule show` lists: the latest. */
const MAX_RUNS_SHOWN = 1000;

interface ActiveSchedule {
  record: StoredSchedule;
  signed: SignedAction;
  body: ActionBody;
  signerKeyIds: string[];
  weight: number;
}

export class ScheduleDesk {
  private readonly active = new Map<string, ActiveSchedule>();
  /** Stopped schedules still inside their window, told again to agents that come back. */
  private readonly stops = new Map<string, { stop: Uint8Array; target: string; untilMs: number }>();
  private ticker?: NodeJS.Timeout;

  constructor(
    private readonly core: CoordinatorCore,
    private readonly parts: { dispatcher: Dispatcher; queries: Queries; alerts: AlertBook },
  ) {}

  /** Loads the schedules still running (each verified again) and starts issuing their runs. */
  start(): void {
    const now = this.core.now();
    for (const record of this.core.store.schedules.active(now)) {
      try {
        this.activate(record);
      } catch (err) {
        const p = problemOf(err);
        this.core.log.error("stored schedule no longer verifies; none of its runs is sent", {
          schedule: record.id,
          ...p,
        });
        this.core.audit.record("coordinator", "stored schedule no longer verifies; not run", {
          code: p.code,
          message: `${record.id}: ${p.message}`,
        });
      }
    }
    // Stopped schedules whose window lasts: agents heard again are told (they may have missed it).
    for (const s of this.core.store.schedules.stoppedUntil(now)) {
      if (s.stopSigned) this.stops.set(s.id, { stop: s.stopSigned, target: s.target, untilMs: s.endsAtMs });
    }
    this.ticker = setInterval(() => this.tick(), TICK_MS);
  }

  stop(): void {
    clearInterval(this.ticker);
  }

  create(signed: SignedAction | undefined, actor: string, caller?: TrustedInvestigator): ScheduleInfo {
    const { store, keyring, batcher, audit } = this.core;
    const now = this.core.now();
    if (!signed) throw new DragnetError(Codes.UNSIGNED, "the request carries no signed schedule");
    // Vetted as of its first run: a schedule may start later than an action may.
    let firstRun = now;
    try {
      firstRun = ActionBody.decode(signed.body).validFromMs;
    } catch {
      // vetAction says what is wrong with it
    }
    const { verified, body, modules, aclNames, shortfall } = vetAction(
      signed,
      keyring,
      Math.max(now, firstRun),
    );
    const { everyMs, runs } = checkSchedule(body);
    if (body.validFromMs > now + MAX_LEAD_MS) {
      throw new DragnetError(Codes.ACTION_INVALID, "a schedule's first run must be within 30 days");
    }
    if (body.expiresAtMs <= now) throw new DragnetError(Codes.EXPIRED, "every run of this schedule is over");
    for (const m of new Set(aclNames)) {
      const role = roleToSign(m);
      if (caller && !caller.roles.has(role)) {
        throw new DragnetError(
          Codes.FORBIDDEN,
          `${caller.name} may not schedule ${m}: it needs the ${role} role`,
        );
      }
    }
    if (shortfall) {
      // No approval round for schedules: each run is sent by a clock, with nobody to wait for.
      throw new DragnetError(
        Codes.WEIGHT,
        `${shortfall.module} needs signatures of weight ${shortfall.required}; this schedule carries ${shortfall.weight} (co-sign it before creating it)`,
      );
    }
    batcher.flush();
    if (store.schedules.get(body.id) || store.getAction(body.id)) {
      throw new DragnetError(Codes.ACTION_INVALID, `schedule ${body.id} was already created`);
    }
    if (body.incidentId && !store.getIncident(body.incidentId)) {
      throw new DragnetError(Codes.NOT_FOUND, `no incident ${body.incidentId.slice(0, 40)}`);
    }
    const record: StoredSchedule = {
      id: body.id,
      name: body.name,
      target: body.target,
      signed: SignedAction.encode(signed).finish(),
      signerNames: verified.signers.map((s) => s.name),
      modules,
      incidentId: body.incidentId,
      everyMs,
      runs,
      firstRunAtMs: body.validFromMs,
      endsAtMs: body.expiresAtMs,
      submittedAtMs: now,
      lastRun: 0,
      stoppedBy: "",
      stopReason: "",
    };
    // Stored before anything is sent: a coordinator killed now still knows it.
    store.schedules.put(record);
    this.activate(record);
    audit.record(actor, "schedule created", {
      actionId: body.id,
      message: `${body.name}: ${modules.join(", ")} every ${everyMs} ms, ${runs} runs, target ${body.target}; signed by ${record.signerNames.join(", ")}`,
    });
    this.tick();
    return this.info(store.schedules.get(body.id) ?? record, now);
  }

  stopSchedule(stop: SignedScheduleStop | undefined, actor: string, actorKeyId?: string): ScheduleInfo {
    const { store, audit, keyring } = this.core;
    const now = this.core.now();
    const { body, signer } = verifyScheduleStop(stop, keyring);
    if (actorKeyId !== undefined && signer.keyId !== actorKeyId) {
      throw new DragnetError(
        Codes.FORBIDDEN,
        `${actor} sent a stop signed by ${signer.name}: sign it with your own key`,
      );
    }
    // The exact id: agents check the stop's id as signed.
    const record = isId(body.scheduleId) ? store.schedules.get(body.scheduleId) : undefined;
    if (!record) throw new DragnetError(Codes.NOT_FOUND, `no schedule ${body.scheduleId.slice(0, 40)}`);
    const id = record.id;
    // Whoever stops it may sign what it runs: the roles its modules need.
    for (const m of new Set(record.modules)) {
      const role = roleToSign(m);
      if (!signer.roles.has(role)) {
        throw new DragnetError(
          Codes.FORBIDDEN,
          `${signer.name} may not stop a schedule of ${m}: it needs the ${role} role`,
        );
      }
    }
    if (record.stoppedAtMs) {
      throw new DragnetError(
        Codes.SCHEDULE,
        `schedule ${id} was already stopped by ${record.stoppedBy} at ${new Date(record.stoppedAtMs).toISOString()}`,
      );
    }
    const signedStop = SignedScheduleStop.encode(stop!).finish();
    const reason = body.reason.slice(0, 500);
    store.schedules.stop(id, now, signer.name, reason, signedStop);
    this.active.delete(id);
    this.cancelOpenRun(id);
    audit.record(actor, "schedule stopped", {
      actionId: id,
      message: `${record.name}: stopped by ${signer.name}${reason ? ` (${reason})` : ""} after run ${record.lastRun}`,
    });
    if (now < record.endsAtMs) {
      this.stops.set(id, { stop: signedStop, target: record.target, untilMs: record.endsAtMs });
      this.tellStop(id, undefined);
    }
    return this.info(store.schedules.get(id)!, now);
  }

  /** The open run of a stopped schedule goes to no agent that has not taken it yet. */
  private cancelOpenRun(scheduleId: string): void {
    const { book } = this.core;
    for (const action of [...book.all()]) {
      if (action.record.scheduleId !== scheduleId) continue;
      for (const c of [...action.byId.values()]) {
        if (
          c.status !== CommandStatus.COMMAND_STATUS_PENDING &&
          c.status !== CommandStatus.COMMAND_STATUS_SENT
        )
          continue;
        book.transition(action, c, CommandStatus.COMMAND_STATUS_CANCELLED, {
          problem: {
            code: Codes.SCHEDULE,
            message: "the schedule was stopped before this agent started the run",
          },
        });
      }
    }
  }

  /** An agent heard again: it is told of stops it may have missed. */
  agentCameBack(agentId: string): void {
    for (const id of this.stops.keys()) this.tellStop(id, agentId);
  }

  list(limit: number): ScheduleInfo[] {
    const now = this.core.now();
    return this.core.store.schedules
      .list(Math.min(Math.max(limit || 100, 1), 1000))
      .map((s) => this.info(s, now));
  }

  detail(idOrPrefix: string): ScheduleDetail {
    const id = this.resolve(idOrPrefix);
    const { store } = this.core;
    this.core.batcher.flush();
    // The latest runs (a schedule every second for 30 days has millions).
    return {
      schedule: this.info(store.schedules.get(id)!, this.core.now()),
      runs: store.schedules.runs(id, MAX_RUNS_SHOWN),
    };
  }

  /** A result was stored: for a run, once committed, the host's rows are compared with its previous run's. */
  resultStored(actionId: string, agentId: string, result: CommandResult): void {
    // An open action is in the book (results waiting in the stream at start included); a late answer is not:
    // that is rare, so it reads the store.
    const record = this.core.book.get(actionId)?.record ?? this.core.store.getAction(actionId);
    if (!record?.scheduleId || !record.run) return;
    const run = { scheduleId: record.scheduleId, run: record.run, name: record.name };
    this.core.batcher.afterCommit(() => {
      try {
        this.compare(run, actionId, agentId, result);
      } catch (err) {
        this.core.log.error("schedule run answer not compared", {
          action: actionId,
          agent: agentId,
          error: err,
        });
      }
    });
  }

  /** A run's action completed: one line says what it changed. */
  runCompleted(action: OpenAction): void {
    const { scheduleId, run } = action.record;
    if (!scheduleId || !run) return;
    this.core.batcher.afterCommit(() => {
      const r = this.core.store.schedules.run(scheduleId, run);
      if (!r) return;
      const line =
        r.changed === 0
          ? `no change on ${r.compared} hosts${r.baselines ? ` (${r.baselines} answered for the first time)` : ""}`
          : `${r.changed} of ${r.compared} hosts changed: ${r.added} rows new, ${r.vanished} vanished`;
      this.core.log.info(`schedule run done: ${line}`, { schedule: scheduleId, run });
    });
  }

  private compare(
    run: { scheduleId: string; run: number; name: string },
    actionId: string,
    agentId: string,
    result: CommandResult,
  ): void {
    const schedules = this.core.store.schedules;
    const failed =
      result.status !== CommandStatus.COMMAND_STATUS_SUCCESS ||
      result.operations.some((op) => op.problem?.code || op.truncated);
    if (failed) {
      // An answer cut short says nothing about what vanished: the earlier rows stay the baseline.
      schedules.recordAnswer(run.scheduleId, agentId, run.run, undefined, { failed: 1 });
      return;
    }
    const { rows, partial } = answerRows(result.operations);
    const previous = schedules.lastRows(run.scheduleId, agentId);
    if (!previous) {
      schedules.recordAnswer(run.scheduleId, agentId, run.run, rows, { baselines: 1 });
      return;
    }
    if (previous.run >= run.run) return; // a late answer of an older run
    const diff = diffRows(previous.rows, rows);
    // A partial answer (errors, a module's limit) says what is new, not what is gone: the earlier rows stay.
    const added = diff.added;
    const vanished = partial ? [] : diff.vanished;
    const kept = partial ? [...new Set([...previous.rows, ...rows])].sort().slice(0, MAX_ROWS) : rows;
    const tally: Partial<RunTally> = { compared: 1 };
    if (added.length + vanished.length > 0) {
      Object.assign(tally, { changed: 1, added: added.length, vanished: vanished.length });
    }
    schedules.recordAnswer(run.scheduleId, agentId, run.run, kept, tally);
    if (!tally.changed) return;
    const moduleOf = (row: string) => row.slice(0, row.search(/[ .]/));
    const alert: Alert = {
      id: newId(this.core.now()),
      agentId,
      hostname: this.core.registry.get(agentId)?.hostname ?? "",
      atMs: this.core.now(),
      source: "schedule",
      watch: run.name.replace(/ #\d+$/, ""),
      actionId,
      detectedBy: "run",
      changes: [],
      changesOmitted: 0,
      scheduleId: run.scheduleId,
      run: run.run,
      rows: [
        ...added.map((row) => ({ vanished: false, module: moduleOf(row), row })),
        ...vanished.map((row) => ({ vanished: true, module: moduleOf(row), row })),
      ],
    };
    this.parts.alerts.record(alert);
  }

  private resolve(idOrPrefix: string): string {
    return resolvePrefix("schedule", idOrPrefix, (p, n) => this.core.store.schedules.idsByPrefix(p, n));
  }

  /** Verifies a stored schedule again and keeps it for issuing runs. */
  private activate(record: StoredSchedule): void {
    const signed = SignedAction.decode(record.signed);
    const { verified, body, shortfall } = vetAction(
      signed,
      this.core.keyring,
      Math.max(this.core.now(), record.firstRunAtMs),
    );
    checkSchedule(body);
    if (body.id !== record.id || body.target !== record.target || body.expiresAtMs !== record.endsAtMs) {
      throw new DragnetError(Codes.ACTION_INVALID, "the stored summary does not match the signed schedule");
    }
    if (shortfall) {
      throw new DragnetError(
        Codes.WEIGHT,
        `${shortfall.module} needs weight ${shortfall.required}; the schedule's signatures carry ${shortfall.weight}`,
      );
    }
    this.active.set(record.id, {
      record,
      signed,
      body,
      signerKeyIds: verified.signers.map((s) => s.keyId),
      weight: verified.weight,
    });
  }

  /** Issues each active schedule's open run, once. */
  private tick(): void {
    const now = this.core.now();
    for (const s of [...this.active.values()]) {
      const n = runAt(s.body, now);
      if (n > s.record.runs) {
        this.active.delete(s.record.id);
        continue;
      }
      if (n < 1 || n <= s.record.lastRun) continue;
      try {
        this.issue(s, n, now);
      } catch (err) {
        const p = problemOf(err);
        this.core.log.error("schedule run not issued", { schedule: s.record.id, run: n, ...p });
        // Not tried again every tick: the next run comes at its own time.
        s.record.lastRun = n;
      }
    }
    for (const [id, stop] of this.stops) if (now >= stop.untilMs) this.stops.delete(id);
  }

  private issue(s: ActiveSchedule, n: number, now: number): void {
    const { registry, store, audit, log } = this.core;
    const body = runBody(s.body, n);
    const missed = n - s.record.lastRun - 1;
    const targets = registry.select(parseTarget(body.target), this.parts.queries.targetContext(now));
    const claimed = store.schedules.claimRun({
      scheduleId: s.record.id,
      run: n,
      actionId: body.id,
      issuedAtMs: now,
      targeted: targets.length,
      ...NO_TALLY,
    });
    if (!claimed) {
      // Another coordinator on the same store issued it (or it was stopped meanwhile).
      const fresh = store.schedules.get(s.record.id);
      s.record.lastRun = Math.max(n, fresh?.lastRun ?? n);
      if (fresh?.stoppedAtMs) this.active.delete(s.record.id);
      return;
    }
    s.record.lastRun = n;
    if (missed > 0) {
      const { fromMs } = runWindow(s.body, n - missed);
      log.warn("schedule runs missed: their windows passed while nothing issued them", {
        schedule: s.record.id,
        runs: `${n - missed}..${n - 1}`,
        since: new Date(fromMs).toISOString(),
      });
      audit.record("coordinator", "schedule runs missed", {
        actionId: s.record.id,
        message: `${s.record.name}: runs ${n - missed} to ${n - 1} were not sent (their windows passed while the coordinator was down)`,
      });
    }
    const record = actionRecordOf(body, {
      signed: s.record.signed,
      signerKeyIds: s.signerKeyIds,
      signerNames: s.record.signerNames,
      modules: s.record.modules,
      submittedAtMs: now,
      state: ActionState.ACTION_STATE_RELEASED,
      weight: s.weight,
      requiredWeight: 0,
      scheduleId: s.record.id,
      run: n,
    });
    const { targeted, offline } = this.parts.dispatcher.release(record, s.signed, body, now, targets);
    audit.record("coordinator", "schedule run issued", {
      actionId: body.id,
      message: `${s.record.name} run ${n} of ${s.record.runs}: ${targeted} agents (${offline} offline)`,
    });
  }

  /** Publishes a stop to one agent, or to every agent online that the schedule targets. */
  private tellStop(scheduleId: string, agentId: string | undefined): void {
    const stop = this.stops.get(scheduleId);
    const nc = this.core.nats();
    if (!stop || !nc || nc.isClosed()) return;
    const { registry, subjects, config } = this.core;
    const now = this.core.now();
    const expr = parseTarget(stop.target);
    const ctx = this.parts.queries.targetContext(now);
    let agents: StoredAgent[];
    if (agentId) {
      // One agent heard again: judged alone, not by walking the fleet.
      const agent = registry.get(agentId);
      agents = agent && evaluateTarget(expr, registry.subject(agent, now), ctx) ? [agent] : [];
    } else {
      agents = registry.select(expr, ctx).filter((a) => !registry.isOffline(a.id, now));
    }
    const envelope = CommandEnvelope.encode({
      commandId: `stop-${scheduleId}`,
      action: undefined,
      sentAtMs: now,
      coordinator: config.id,
      run: 0,
      stop: SignedScheduleStop.decode(stop.stop),
    }).finish();
    for (const a of agents) nc.publish(subjects.command(a.id), envelope);
  }

  private info(s: StoredSchedule, now: number): ScheduleInfo {
    const body = this.active.get(s.id)?.body;
    const n = body ? runAt(body, now) : 0;
    const state = s.stoppedAtMs
      ? "stopped"
      : now >= s.endsAtMs
        ? "finished"
        : now < s.firstRunAtMs
          ? "waiting"
          : "active";
    const nextRun = Math.max(n, s.lastRun) + 1;
    return {
      id: s.id,
      name: s.name,
      target: s.target,
      modules: s.modules,
      everyMs: s.everyMs,
      runs: s.runs,
      firstRunAtMs: s.firstRunAtMs,
      endsAtMs: s.endsAtMs,
      signerNames: s.signerNames,
      submittedAtMs: s.submittedAtMs,
      lastRun: Math.max(s.lastRun, this.active.get(s.id)?.record.lastRun ?? 0),
      state,
      stoppedAtMs: s.stoppedAtMs ?? 0,
      stoppedBy: s.stoppedBy,
      stopReason: s.stopReason,
      nextRunAtMs:
        state === "active" || state === "waiting"
          ? nextRun <= s.runs
            ? s.firstRunAtMs + (nextRun - 1) * s.everyMs
            : 0
          : 0,
      incidentId: s.incidentId,
    };
  }
}
