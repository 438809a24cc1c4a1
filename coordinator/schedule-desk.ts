import {
  Codes,
  DragnetError,
  evaluateTarget,
  isId,
  matchedActionIds,
  newId,
  parseTarget,
  problemOf,
  roleToSign,
  type TargetContext,
  type TargetExpr,
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
import { KeyedQueue } from "./keyed-queue.js";
import type { Queries } from "./queries.js";
import { answerRows, diffRows, MAX_ROWS } from "./schedule-rows.js";
import {
  NO_TALLY,
  type RunTally,
  type StoredAction,
  type StoredAgent,
  type StoredSchedule,
} from "./store/store.js";

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

/** How often, with several coordinators, the store is read for schedules created through another. */
const PEER_SCHEDULES_MS = 2000;

export class ScheduleDesk {
  private readonly active = new Map<string, ActiveSchedule>();
  /** Stopped schedules still inside their window, told again to agents that come back. */
  private readonly stops = new Map<string, { stop: Uint8Array; target: string; untilMs: number }>();
  /** Schedules whose run a tick is issuing: the next tick leaves them to it. */
  private readonly issuing = new Set<string>();
  /** Each host's answers to a schedule, compared one at a time with the rows the one before left. */
  private readonly comparing = new KeyedQueue();
  private ticker?: NodeJS.Timeout;
  /** When the store's schedules were last read for ones another coordinator created. */
  private lookedAtStoreMs = 0;

  constructor(
    private readonly core: CoordinatorCore,
    private readonly parts: { dispatcher: Dispatcher; queries: Queries; alerts: AlertBook },
  ) {}

  /** Loads the schedules still running (each verified again) and starts issuing their runs. */
  async start(): Promise<void> {
    const now = this.core.now();
    for (const record of await this.core.store.schedules.active(now)) {
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
    for (const s of await this.core.store.schedules.stoppedUntil(now)) {
      if (s.stopSigned) this.stops.set(s.id, { stop: s.stopSigned, target: s.target, untilMs: s.endsAtMs });
    }
    this.ticker = setInterval(
      () => this.tick().catch((err: unknown) => this.core.log.error("schedule tick failed", { error: err })),
      TICK_MS,
    );
  }

  stop(): void {
    clearInterval(this.ticker);
  }

  async create(
    signed: SignedAction | undefined,
    actor: string,
    caller?: TrustedInvestigator,
  ): Promise<ScheduleInfo> {
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
    // The same schedule created twice at once: the second sees the first stored.
    await this.core.perAction.run(body.id, async () => {
      await batcher.flush();
      if ((await store.schedules.get(body.id)) || (await store.getAction(body.id))) {
        throw new DragnetError(Codes.ACTION_INVALID, `schedule ${body.id} was already created`);
      }
      if (body.incidentId && !(await store.getIncident(body.incidentId))) {
        throw new DragnetError(Codes.NOT_FOUND, `no incident ${body.incidentId.slice(0, 40)}`);
      }
      // Stored before anything is sent: a coordinator killed now still knows it.
      await store.schedules.put(record);
      this.activate(record);
      audit.record(actor, "schedule created", {
        actionId: body.id,
        message: `${body.name}: ${modules.join(", ")} every ${everyMs} ms, ${runs} runs, target ${body.target}; signed by ${record.signerNames.join(", ")}`,
      });
    });
    // Its first run goes now if its window is open (outside the queue: issuing a run takes its turn there).
    await this.tick();
    return this.info((await store.schedules.get(body.id)) ?? record, now);
  }

  async stopSchedule(
    stop: SignedScheduleStop | undefined,
    actor: string,
    actorKeyId?: string,
  ): Promise<ScheduleInfo> {
    const { keyring } = this.core;
    const { body, signer } = verifyScheduleStop(stop, keyring);
    if (actorKeyId !== undefined && signer.keyId !== actorKeyId) {
      throw new DragnetError(
        Codes.FORBIDDEN,
        `${actor} sent a stop signed by ${signer.name}: sign it with your own key`,
      );
    }
    // The exact id: agents check the stop's id as signed.
    if (!isId(body.scheduleId))
      throw new DragnetError(Codes.NOT_FOUND, `no schedule ${body.scheduleId.slice(0, 40)}`);
    // After a run being issued has its commands (so that they are cancelled), before the next.
    return this.core.perAction.run(body.scheduleId, () =>
      this.stopNow(body.scheduleId, body.reason, signer, stop!, actor),
    );
  }

  private async stopNow(
    scheduleId: string,
    why: string,
    signer: { name: string; roles: ReadonlySet<string> },
    stop: SignedScheduleStop,
    actor: string,
  ): Promise<ScheduleInfo> {
    const { store, audit } = this.core;
    const now = this.core.now();
    const record = await store.schedules.get(scheduleId);
    if (!record) throw new DragnetError(Codes.NOT_FOUND, `no schedule ${scheduleId.slice(0, 40)}`);
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
    const stoppedAlready = (by: string, atMs: number) =>
      new DragnetError(
        Codes.SCHEDULE,
        `schedule ${id} was already stopped by ${by} at ${new Date(atMs).toISOString()}`,
      );
    if (record.stoppedAtMs) throw stoppedAlready(record.stoppedBy, record.stoppedAtMs);
    const signedStop = SignedScheduleStop.encode(stop).finish();
    const reason = why.slice(0, 500);
    if (!(await store.schedules.stop(id, now, signer.name, reason, signedStop))) {
      // Another coordinator sharing the store stopped it since it was read.
      const other = await store.schedules.get(id);
      throw stoppedAlready(other?.stoppedBy ?? "another coordinator", other?.stoppedAtMs ?? now);
    }
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
    return this.info((await store.schedules.get(id))!, now);
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

  async list(limit: number): Promise<ScheduleInfo[]> {
    const now = this.core.now();
    const schedules = await this.core.store.schedules.list(Math.min(Math.max(limit || 100, 1), 1000));
    return schedules.map((s) => this.info(s, now));
  }

  async detail(idOrPrefix: string): Promise<ScheduleDetail> {
    const id = await this.resolve(idOrPrefix);
    const { store } = this.core;
    await this.core.batcher.flush();
    // The latest runs (a schedule every second for 30 days has millions).
    return {
      schedule: this.info((await store.schedules.get(id))!, this.core.now()),
      runs: await store.schedules.runs(id, MAX_RUNS_SHOWN),
    };
  }

  /**
   * A result was stored: for a run, once committed, the host's rows are compared with its previous run's.
   * An open action is in the book (results waiting in the stream at start included); a late answer is
   * not: that is rare, so it reads the store.
   */
  resultStored(actionId: string, agentId: string, result: CommandResult): void {
    const open = this.core.book.get(actionId);
    if (open) {
      this.compareOnCommit(open.record, agentId, result);
      return;
    }
    this.core.store
      .getAction(actionId)
      .then((record) => record && this.compareOnCommit(record, agentId, result))
      .catch((err: unknown) =>
        this.core.log.error("schedule run answer not compared", {
          action: actionId,
          agent: agentId,
          error: err,
        }),
      );
  }

  private compareOnCommit(record: StoredAction, agentId: string, result: CommandResult): void {
    if (!record.scheduleId || !record.run) return;
    const run = { scheduleId: record.scheduleId, run: record.run, name: record.name };
    this.core.batcher.afterCommit(() => {
      this.comparing
        .run(`${run.scheduleId} ${agentId}`, () => this.compare(run, record.id, agentId, result))
        .catch((err: unknown) =>
          this.core.log.error("schedule run answer not compared", {
            action: record.id,
            agent: agentId,
            error: err,
          }),
        );
    });
  }

  /** A run's action completed: one line says what it changed (once its answers are compared). */
  runCompleted(action: OpenAction): void {
    const { scheduleId, run } = action.record;
    if (!scheduleId || !run) return;
    this.core.batcher.afterCommit(() => {
      // Behind each host's comparison, queued by the time this is told.
      const compared = [...action.byAgent.keys()].map((agentId) =>
        this.comparing.run(`${scheduleId} ${agentId}`, () => Promise.resolve()),
      );
      Promise.all(compared)
        .then(() => this.core.store.schedules.run(scheduleId, run))
        .then((r) => {
          if (!r) return;
          const line =
            r.changed === 0
              ? `no change on ${r.compared} hosts${r.baselines ? ` (${r.baselines} answered for the first time)` : ""}`
              : `${r.changed} of ${r.compared} hosts changed: ${r.added} rows new, ${r.vanished} vanished`;
          this.core.log.info(`schedule run done: ${line}`, { schedule: scheduleId, run });
        })
        .catch((err: unknown) =>
          this.core.log.warn("schedule run's tally not read", { schedule: scheduleId, error: err }),
        );
    });
  }

  private async compare(
    run: { scheduleId: string; run: number; name: string },
    actionId: string,
    agentId: string,
    result: CommandResult,
  ): Promise<void> {
    const schedules = this.core.store.schedules;
    const failed =
      result.status !== CommandStatus.COMMAND_STATUS_SUCCESS ||
      result.operations.some((op) => op.problem?.code || op.truncated);
    if (failed) {
      // An answer cut short says nothing about what vanished: the earlier rows stay the baseline.
      await schedules.recordAnswer(run.scheduleId, agentId, run.run, undefined, { failed: 1 });
      return;
    }
    const { rows, partial } = answerRows(result.operations);
    const previous = await schedules.lastRows(run.scheduleId, agentId);
    if (!previous) {
      await schedules.recordAnswer(run.scheduleId, agentId, run.run, rows, { baselines: 1 });
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
    await schedules.recordAnswer(run.scheduleId, agentId, run.run, kept, tally);
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

  private resolve(idOrPrefix: string): Promise<string> {
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

  /** Issues each active schedule's open run, once; resolves when they are issued (never rejects). */
  private async tick(): Promise<void> {
    const now = this.core.now();
    if (this.core.peers && now - this.lookedAtStoreMs >= PEER_SCHEDULES_MS) {
      // Several coordinators: schedules created through another are run from here too (a run is
      // claimed in the store, so each is issued once whichever coordinator claims it).
      this.lookedAtStoreMs = now;
      for (const record of await this.core.store.schedules.active(now)) {
        if (this.active.has(record.id)) continue;
        try {
          this.activate(record);
        } catch (err) {
          this.core.log.error("stored schedule no longer verifies; none of its runs is sent", {
            schedule: record.id,
            ...problemOf(err),
          });
        }
      }
    }
    const issued: Array<Promise<void>> = [];
    for (const s of [...this.active.values()]) {
      const n = runAt(s.body, now);
      if (n > s.record.runs) {
        this.active.delete(s.record.id);
        continue;
      }
      if (n < 1 || n <= s.record.lastRun || this.issuing.has(s.record.id)) continue;
      issued.push(this.issueOnce(s, n, now));
    }
    for (const [id, stop] of this.stops) if (now >= stop.untilMs) this.stops.delete(id);
    await Promise.all(issued);
  }

  /** Issues run n unless a stop comes first (they take turns on the schedule's id); a failure is logged. */
  private async issueOnce(s: ActiveSchedule, n: number, now: number): Promise<void> {
    const id = s.record.id;
    this.issuing.add(id);
    try {
      await this.core.perAction.run(id, () =>
        this.active.has(id) ? this.issue(s, n, now) : Promise.resolve(),
      );
    } catch (err) {
      const p = problemOf(err);
      this.core.log.error("schedule run not issued", { schedule: id, run: n, ...p });
      // Not tried again every tick: the next run comes at its own time.
      s.record.lastRun = Math.max(s.record.lastRun, n);
    } finally {
      this.issuing.delete(id);
    }
  }

  private async issue(s: ActiveSchedule, n: number, now: number): Promise<void> {
    const { store, audit, log } = this.core;
    const body = runBody(s.body, n);
    const missed = n - s.record.lastRun - 1;
    const targets = await this.parts.queries.select(parseTarget(body.target), now);
    const claimed = await store.schedules.claimRun({
      scheduleId: s.record.id,
      run: n,
      actionId: body.id,
      issuedAtMs: now,
      targeted: targets.length,
      ...NO_TALLY,
    });
    if (!claimed) {
      // Another coordinator on the same store issued it (or it was stopped meanwhile).
      const fresh = await store.schedules.get(s.record.id);
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
    const { targeted, offline } = await this.parts.dispatcher.release(record, s.signed, body, now, targets);
    audit.record("coordinator", "schedule run issued", {
      actionId: body.id,
      message: `${s.record.name} run ${n} of ${s.record.runs}: ${targeted} agents (${offline} offline)`,
    });
  }

  /**
   * Publishes a stop to one agent, or to every agent online that the schedule targets: at once, unless
   * its target names matched(...) sets (then once the store has given them).
   */
  private tellStop(scheduleId: string, agentId: string | undefined): void {
    const stop = this.stops.get(scheduleId);
    if (!stop) return;
    const now = this.core.now();
    const expr = parseTarget(stop.target);
    if (matchedActionIds(expr).length === 0) {
      this.publishStop(scheduleId, stop.stop, expr, { now }, agentId);
      return;
    }
    this.parts.queries
      .targetContext(expr, now)
      .then((ctx) => this.publishStop(scheduleId, stop.stop, expr, ctx, agentId))
      .catch((err: unknown) =>
        this.core.log.warn("schedule stop not told", { schedule: scheduleId, error: err }),
      );
  }

  private publishStop(
    scheduleId: string,
    stop: Uint8Array,
    expr: TargetExpr,
    ctx: TargetContext,
    agentId: string | undefined,
  ): void {
    const nc = this.core.nats();
    if (!nc || nc.isClosed()) return;
    const { registry, subjects, config } = this.core;
    const now = ctx.now;
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
      stop: SignedScheduleStop.decode(stop),
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
