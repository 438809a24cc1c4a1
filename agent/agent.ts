import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type JetStreamClient, jetstream } from "@nats-io/jetstream";
import { fmtCreds } from "@nats-io/jwt";
import { fromSeed } from "@nats-io/nkeys";
import {
  connect,
  headers,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import pLimit, { type LimitFunction } from "p-limit";
import { AgentSigner, jwtLifetime, parseCreds } from "../common/agent-identity.js";
import {
  Codes,
  createLogger,
  DEFAULT_COORDINATOR,
  DragnetError,
  Keyring,
  type Logger,
  problemOf,
  replaceFile,
  Subjects,
  type TargetSubject,
  VERSION,
  writeFileAtomic,
} from "../common/mod.js";
import { agentInboxPrefix, natsConnectOptions } from "../common/nats-link.js";
import { AckStatus, Alert, CommandAck, CommandResult, CommandStatus, Heartbeat } from "../proto/mod.js";
import { type AcceptedCommand, CommandRunner, coordinatorOf } from "./command-runner.js";
import type { AgentConfig } from "./config.js";
import { Courier } from "./courier.js";
import { hostFacts } from "./host-facts.js";
import { loadOrCreateAgentId } from "./identity.js";
import { configureSearchWorkers } from "./modules/file/worker-pool.js";
import { agentModules } from "./modules/modules.gen.js";
import { type CoordinatorTopic, ModuleRegistry, type SomeModule } from "./modules/registry.js";
import { Outbox } from "./outbox.js";
import { ReplayGuard } from "./replay-guard.js";
import { encodeWithin } from "./result-size.js";
import { ScheduleLedger } from "./schedule-ledger.js";

// The endpoint agent: one outbound NATS connection (it never listens), a
// heartbeat, and a subscription to its own command subject. Results, and
// alerts from modules' services (persistent watches), go out through
// JetStream and stay in an on-disk outbox until the server has acknowledged
// them.

/** How often undelivered results and alerts are tried again while the link is up. */
const OUTBOX_RETRY_MS = 5000;
/** The largest result sent: NATS' default message limit (1 MiB) less room for headers. */
const MAX_RESULT_BYTES = 1024 * 1024 - 4096;
/** Alerts waiting for NATS: fewer and smaller than results may be (a watch bounds each alert). */
const ALERT_OUTBOX_LIMITS = { maxEntries: 1000, maxBytes: 32 * 1024 * 1024 };
/** In the state directory: what the agent is doing, for `dragnet-agent status`. */
export const STATUS_FILE = "status.json";

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 30_000;

/**
 * How long to wait before the next attempt to reach NATS, growing with how
 * long the link has been down (a quarter of the outage so far, from 250 ms up
 * to 30 s), with jitter in [half, full] so a fleet's reconnects spread out
 * after an outage. It depends on time rather than on a count of attempts
 * because nats.js asks for the delay on every turn of its dial loop.
 */
export function reconnectDelay(downForMs: number, random = Math.random()): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, Math.max(RECONNECT_MIN_MS, downForMs / 4));
  return Math.round(ceiling / 2 + (random * ceiling) / 2);
}

/** The agent's signing key, from its NATS credentials; without them its messages go unsigned (and are refused). */
function loadSigner(config: AgentConfig, log: Logger): AgentSigner | undefined {
  if (!config.nats.creds) {
    log.warn("no NATS credentials: what this agent sends is not signed, and coordinators refuse it");
    return undefined;
  }
  return AgentSigner.fromCreds(readFileSync(config.nats.creds, "utf8"));
}

export interface AgentOptions {
  log?: Logger;
  modules?: readonly SomeModule[];
  /** Called when a module asks for a restart (an upgrade): the executable stops the agent and exits. */
  onRestart?: (reason: string) => void;
  /** The agent's clock (tests shift it to play a host whose clock is off). */
  now?: () => number;
}

/** How long a command may run before the agent acknowledges it (one answered sooner is acknowledged by its result). */
const ACK_AFTER_MS = 250;
export class Agent {
  readonly id: string;
  private readonly log: Logger;
  private readonly subjects: Subjects;
  private readonly runner: CommandRunner;
  private readonly replay: ReplayGuard;
  private readonly modules: ModuleRegistry;
  private readonly results: Courier;
  private readonly alerts: Courier;
  private js?: JetStreamClient;
  private outboxTimer?: NodeJS.Timeout;
  private readonly startedAtMs = Date.now();
  private readonly stopping = new AbortController();
  private nc?: NatsConnection;
  private sub?: Subscription;
  private heartbeatTimer?: NodeJS.Timeout;
  private running = new Set<Promise<void>>();
  private readonly slots: LimitFunction;
  /** Signs what the agent publishes with the key of its NATS credentials (none without credentials). */
  private signer: AgentSigner | undefined;
  private renewal?: NodeJS.Timeout;
  /** Why the status file could not be written, until it can again. */
  private statusProblem?: string;
  /** When the link to NATS was lost (or first sought); undefined while connected. */
  private linkLostAt: number | undefined = Date.now();

  private readonly onRestart: (reason: string) => void;
  private readonly now: () => number;

  constructor(
    private readonly config: AgentConfig,
    options: AgentOptions = {},
  ) {
    this.onRestart =
      options.onRestart ??
      ((reason) => this.log.warn("restart asked for, but nothing restarts this agent", { reason }));
    this.id = loadOrCreateAgentId(config.stateDir);
    this.log = (options.log ?? createLogger("agent", { level: config.logLevel })).child({ agent: this.id });
    this.subjects = new Subjects(config.subjectPrefix);
    this.replay = new ReplayGuard(join(config.stateDir, "executed-actions"), config.clockSkewMs);
    this.signer = loadSigner(config, this.log);
    // Not while disconnected: a publish then waits out its whole timeout, and the flush on
    // reconnecting skips a message still being published — its result would come 10 s late.
    const link = () =>
      this.nc && !this.nc.isClosed() && this.linkLostAt === undefined ? this.js : undefined;
    const sign = (subject: string, data: Uint8Array) => this.headersFor(subject, data);
    this.results = new Courier(
      new Outbox(join(config.stateDir, "outbox"), this.log),
      // Agent and command as message id: another agent cannot claim this result's id and have it dropped as a duplicate.
      (commandId, coordinator) => ({
        subject: this.subjects.result(this.id, coordinator || DEFAULT_COORDINATOR, commandId),
        msgID: `${this.id}.${commandId}`,
      }),
      link,
      sign,
      this.log,
    );
    this.alerts = new Courier(
      new Outbox(join(config.stateDir, "alert-outbox"), this.log, ALERT_OUTBOX_LIMITS, ".alert"),
      (alertId) => ({ subject: this.subjects.alert(this.id, alertId), msgID: `${this.id}.${alertId}` }),
      link,
      sign,
      this.log,
    );
    this.recoverInterrupted();
    this.modules = new ModuleRegistry(options.modules ?? Object.values(agentModules));
    this.slots = pLimit(config.maxConcurrentCommands);
    configureSearchWorkers({ memoryMb: config.commandMemoryMb });
    this.now = options.now ?? Date.now;
    this.runner = new CommandRunner({
      now: this.now,
      agentId: this.id,
      keyring: Keyring.load(config.keyring),
      modules: this.modules,
      replay: this.replay,
      schedules: new ScheduleLedger(join(config.stateDir, "schedules.json")),
      clockSkewMs: config.clockSkewMs,
      stateDir: config.stateDir,
      protectedPaths: [
        config.stateDir,
        config.keyring,
        config.nats.creds,
        config.nats.ca,
        config.configFile,
      ].filter((p): p is string => !!p),
      log: this.log,
      self: () => this.targetSubject(),
      commandMemoryMb: config.commandMemoryMb,
      ask: (coordinator, topic, payload, timeoutMs) => this.ask(coordinator, topic, payload, timeoutMs),
    });
  }

  /**
   * Commands accepted before a crash or kill that never produced a result are
   * reported as failed — never run again: the replay guard recorded them before
   * they ran, and at most once is the only safe rule for actions that change a
   * host.
   */
  private recoverInterrupted(): void {
    for (const { actionId, commandId, coordinator } of this.replay.unfinished()) {
      if (!this.results.outbox.has(commandId)) {
        const result = this.failedResult(commandId, actionId, {
          code: Codes.AGENT_LOST,
          message: "the agent stopped while running this command; it is not run again",
        });
        this.results.outbox.add(
          commandId,
          coordinator || DEFAULT_COORDINATOR,
          CommandResult.encode(result).finish(),
        );
        this.log.warn("reporting a command interrupted by a restart as failed", {
          command: commandId,
          action: actionId,
        });
      }
      this.replay.finished(commandId);
    }
  }

  /** A result that reports a command failed as a whole, with no operation's output. */
  private failedResult(
    commandId: string,
    actionId: string,
    problem: { code: string; message: string },
  ): CommandResult {
    const now = Date.now();
    return {
      commandId,
      actionId,
      agentId: this.id,
      status: CommandStatus.COMMAND_STATUS_FAILED,
      problem,
      operations: [],
      found: false,
      startedAtMs: now,
      finishedAtMs: now,
    };
  }

  /** What the agent knows of itself, to judge whether an action's target means it. */
  private targetSubject(): TargetSubject {
    const hb = this.heartbeat();
    return {
      id: this.id,
      hostname: hb.hostname,
      os: hb.os,
      arch: hb.arch,
      version: VERSION,
      addresses: hb.addresses,
      tags: this.config.tags,
      isolated: hb.isolated,
    };
  }

  /** Connects (retrying forever, with backoff and jitter) and starts answering. */
  async start(): Promise<void> {
    this.nc = await connect({
      ...natsConnectOptions(this.config.nats),
      name: `dragnet-agent ${this.id}`,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
      reconnectDelayHandler: () => this.nextReconnectDelay(),
      pingInterval: 20_000,
      maxPingOut: 3,
      inboxPrefix: agentInboxPrefix(this.id),
    });
    this.js = jetstream(this.nc);
    this.linkLostAt = undefined;
    this.log.info("connected", { server: this.nc.getServer(), version: VERSION });
    // Runs as long as the connection: it only ends (or fails) with it.
    this.watchStatus(this.nc).catch((err) => this.log.error("NATS status watch failed", { error: err }));
    this.sub = this.nc.subscribe(this.subjects.command(this.id), {
      callback: (err, msg) => {
        if (err) {
          this.log.error("command subscription failed", { error: err });
          return;
        }
        this.track(this.onCommand(msg));
      },
    });
    this.publishHeartbeat();
    this.heartbeatTimer = setInterval(() => this.publishHeartbeat(), this.config.heartbeatIntervalMs);
    // Heartbeats (and the status file) go on while the link is down: the status then says so.
    this.outboxTimer = setInterval(() => this.flushOutboxes(), OUTBOX_RETRY_MS);
    this.flushOutboxes();
    this.scheduleRenewal();
    await this.modules.startServices({
      stateDir: this.config.stateDir,
      log: this.log,
      natsServers: this.config.nats.servers,
      lab: this.config.lab,
      linkDownSince: () => this.linkLostAt,
      self: () => ({ agentId: this.id, hostname: hostFacts(this.config.hostname).hostname }),
      alert: (alert) => this.raiseAlert(alert),
      heartbeat: () => this.publishHeartbeat(),
      flushed: async () => {
        if (!this.nc || this.nc.isClosed() || this.linkLostAt !== undefined)
          throw new DragnetError(Codes.UNAVAILABLE, "not connected to NATS");
        await this.nc.flush();
      },
      releaseKeys: this.config.releaseKeys,
      keyringFile: this.config.keyring,
      trustKeyring: (keyring) => this.runner.trustKeyring(keyring),
      // After this command's result is on its way: the timer lets the runner hand it to the outbox.
      restart: (reason) => {
        this.log.info("restarting", { reason });
        setTimeout(() => this.onRestart(reason), 500);
      },
    });
    // What the services changed (isolation re-applied) is in the next heartbeat: send it now.
    this.publishHeartbeat();
  }

  async stop(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    clearInterval(this.outboxTimer);
    clearTimeout(this.renewal);
    this.stopping.abort();
    this.sub?.unsubscribe();
    await this.modules.stopServices();
    await Promise.allSettled([...this.running]);
    if (this.nc && !this.nc.isClosed()) await this.nc.drain().catch(() => this.nc?.close());
  }

  private nextReconnectDelay(): number {
    return reconnectDelay(Date.now() - (this.linkLostAt ?? Date.now()));
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      switch (s.type) {
        case "disconnect":
          this.linkLostAt ??= Date.now();
          this.log.warn("disconnected from NATS", { server: s.server });
          break;
        case "reconnect":
          this.linkLostAt = undefined;
          this.log.info("reconnected to NATS", { server: s.server });
          this.publishHeartbeat();
          this.flushOutboxes();
          break;
        case "error":
          this.log.warn("NATS error", { error: s.error });
          break;
        default:
          break;
      }
    }
  }

  /** Keeps background work in `running` until it settles (stop waits for it); a failure is logged, never unhandled. */
  private track(p: Promise<void>): void {
    this.running.add(p);
    void p
      .catch((err) => this.log.error("background work failed", { error: err }))
      .finally(() => this.running.delete(p));
  }

  private publishHeartbeat(): void {
    const hb = this.heartbeat();
    const connected = !!this.nc && !this.nc.isClosed() && this.linkLostAt === undefined;
    if (connected) this.publish(this.subjects.heartbeat(this.id), Heartbeat.encode(hb).finish());
    this.writeStatus(hb, connected);
  }

  /** What `dragnet-agent status` shows: written with every heartbeat, whether or not NATS could take it. */
  private writeStatus(hb: Heartbeat, connected: boolean): void {
    const status = {
      id: this.id,
      pid: process.pid,
      version: VERSION,
      hostname: hb.hostname,
      startedAt: new Date(this.startedAtMs).toISOString(),
      connected,
      server: connected ? this.nc?.getServer() : undefined,
      linkLostAt: this.linkLostAt ? new Date(this.linkLostAt).toISOString() : undefined,
      lastHeartbeatAt: new Date().toISOString(),
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      runningCommands: this.slots.activeCount,
      queuedCommands: this.slots.pendingCount,
      isolated: hb.isolated,
      isolatedSince: hb.isolatedSinceMs ? new Date(hb.isolatedSinceMs).toISOString() : undefined,
      isolationActionId: hb.isolationActionId || undefined,
      upgrade: hb.upgradeState
        ? `${hb.upgradeVersion} ${hb.upgradeState}${hb.upgradeDetail ? `: ${hb.upgradeDetail}` : ""}`
        : undefined,
      undelivered: { results: this.results.outbox.size, alerts: this.alerts.outbox.size },
      problems: hb.problems.length ? hb.problems : undefined,
    };
    try {
      // Every heartbeat: replaced whole, not synced (it describes the running process).
      replaceFile(join(this.config.stateDir, STATUS_FILE), `${JSON.stringify(status, null, 2)}\n`, 0o600);
      this.statusProblem = undefined;
    } catch (err) {
      // `dragnet-agent status` sees the file grow old and says so; the heartbeat says why.
      const problem = `status file not written (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the state directory may be full`;
      if (problem !== this.statusProblem) this.log.error(problem, { error: err });
      this.statusProblem = problem;
    }
  }

  /** What is wrong with the agent now, for its heartbeat, status and log. */
  private problems(): string[] {
    this.results.outbox.recheck();
    this.alerts.outbox.recheck();
    const found = [this.results.outbox.problem, this.alerts.outbox.problem, this.statusProblem];
    return [...new Set(found.filter((p): p is string => !!p))];
  }

  /** The agent as its heartbeat describes it, with what module services add (isolation). */
  private heartbeat(): Heartbeat {
    const facts = hostFacts(this.config.hostname);
    const hb: Heartbeat = {
      agentId: this.id,
      hostname: facts.hostname,
      os: facts.os,
      osRelease: facts.osRelease,
      arch: facts.arch,
      version: VERSION,
      addresses: facts.addresses,
      tags: this.config.tags,
      isolated: false,
      startedAtMs: this.startedAtMs,
      sentAtMs: this.now(),
      intervalMs: this.config.heartbeatIntervalMs,
      runningCommands: this.slots.activeCount,
      isolatedSinceMs: 0,
      isolationActionId: "",
      upgradeState: "",
      upgradeVersion: "",
      upgradeDetail: "",
      problems: this.problems(),
    };
    this.modules.describe(hb);
    return hb;
  }

  /** The headers that prove `data` on `subject` comes from this agent (its NATS key signs it). */
  private headersFor(subject: string, data: Uint8Array): MsgHdrs | undefined {
    if (!this.signer) return undefined;
    const h = headers();
    for (const [k, v] of Object.entries(this.signer.sign(subject, data))) h.set(k, v);
    return h;
  }

  private publish(subject: string, data: Uint8Array): void {
    try {
      this.nc?.publish(subject, data, { headers: this.headersFor(subject, data) });
    } catch (err) {
      this.log.warn("publish failed", { subject, error: err });
    }
  }

  private ack(
    coordinator: string,
    commandId: string,
    actionId: string,
    status: AckStatus,
    problem?: { code: string; message: string },
  ) {
    const ack: CommandAck = { commandId, actionId, agentId: this.id, status, problem, atMs: Date.now() };
    this.publish(this.subjects.ack(this.id, coordinator), CommandAck.encode(ack).finish());
  }

  private async onCommand(msg: Msg): Promise<void> {
    let commandId = "";
    let coordinator = DEFAULT_COORDINATOR;
    let accepted: AcceptedCommand;
    try {
      const envelope = this.runner.decode(msg.data);
      commandId = envelope.commandId;
      coordinator = coordinatorOf(envelope);
      if (envelope.stop) {
        // Nothing to run or answer: the stop is kept, and the schedule's runs refused from now on.
        const { scheduleId, by, fresh } = this.runner.acceptStop(envelope.stop);
        if (fresh) this.log.info("schedule stopped", { schedule: scheduleId, by });
        return;
      }
      accepted = this.runner.accept(envelope);
    } catch (err) {
      const problem = problemOf(err);
      this.log.warn("command rejected", { command: commandId, code: problem.code, reason: problem.message });
      this.ack(coordinator, commandId, "", AckStatus.ACK_STATUS_REJECTED, problem);
      return;
    }
    const body = accepted.verified.body;
    this.log.info("running action", {
      command: commandId,
      action: body.id,
      name: body.name,
      signers: accepted.verified.signers.map((s) => s.name),
    });
    // At most maxConcurrentCommands run at once; the others wait their turn. Their timeout
    // counts from their start, and the coordinator hears of both (it judges timeouts too).
    const waits = this.slots.activeCount >= this.config.maxConcurrentCommands;
    // A command answered within ACK_AFTER_MS needs no acknowledgement of its own: its result says
    // it arrived (and half the messages of a sweep, for the coordinator to verify, are saved).
    let ackDue: NodeJS.Timeout | undefined;
    if (waits) this.ack(coordinator, commandId, body.id, AckStatus.ACK_STATUS_QUEUED);
    else {
      ackDue = setTimeout(() => {
        ackDue = undefined;
        this.ack(coordinator, commandId, body.id, AckStatus.ACK_STATUS_RECEIVED);
      }, ACK_AFTER_MS);
    }
    let result: CommandResult;
    try {
      result = await this.slots(() => {
        if (waits) this.ack(coordinator, commandId, body.id, AckStatus.ACK_STATUS_STARTED);
        return this.runner.execute(accepted, this.stopping.signal);
      });
    } catch (err) {
      result = this.failedResult(commandId, body.id, problemOf(err));
    }
    clearTimeout(ackDue);
    this.log.info("action done", {
      command: commandId,
      action: body.id,
      status: CommandStatus[result.status],
      found: result.found,
      ms: result.finishedAtMs - result.startedAtMs,
    });
    // Over NATS' limit, the answer's lists are cut and the cut is flagged; only what cannot be cut fails.
    const data =
      encodeWithin(result, MAX_RESULT_BYTES) ??
      CommandResult.encode({
        ...this.failedResult(commandId, body.id, {
          code: Codes.TOO_LARGE,
          message: `the result is over the ${MAX_RESULT_BYTES}-byte limit even with its lists cut: narrow the search (fewer or narrower paths)`,
        }),
        found: result.found,
        startedAtMs: result.startedAtMs,
        finishedAtMs: result.finishedAtMs,
      }).finish();
    const sending = this.results.send(commandId, coordinator, data);
    this.replay.finished(commandId);
    await sending;
  }

  /**
   * Credentials that expire (enrolment issues them so) are renewed two thirds
   * into their life, by whichever coordinator enrols; a failure is tried
   * again a minute later, or at a quarter of the time left if that is sooner. The new JWT is written over the old (same key) and
   * signs from then on; NATS connections read the file when they reconnect.
   */
  private scheduleRenewal(delayMs?: number): void {
    if (!this.signer || !this.config.nats.creds) return;
    const { iat, exp } = jwtLifetime(this.signer.jwt);
    if (!exp) return;
    const due = (iat + ((exp - iat) * 2) / 3) * 1000;
    const wait = delayMs ?? Math.max(1000, due - Date.now());
    this.renewal = setTimeout(() => void this.renewCredentials(), Math.min(wait, 2 ** 31 - 1));
    this.renewal.unref();
  }

  private async renewCredentials(): Promise<void> {
    const path = this.config.nats.creds!;
    const subject = `${this.subjects.prefix}.renew.${this.id}`;
    try {
      if (!this.nc || this.nc.isClosed()) throw new Error("not connected");
      const data = new Uint8Array();
      const reply = await this.nc.request(subject, data, {
        timeout: 10_000,
        headers: this.headersFor(subject, data),
      });
      const answer = JSON.parse(new TextDecoder().decode(reply.data)) as {
        ok: boolean;
        jwt?: string;
        expiresAtMs?: number;
        message?: string;
      };
      if (!answer.ok || !answer.jwt) throw new Error(answer.message ?? "refused");
      const { seed } = parseCreds(readFileSync(path, "utf8"));
      writeFileAtomic(path, Buffer.from(fmtCreds(answer.jwt, fromSeed(Buffer.from(seed)))), 0o600);
      this.signer = AgentSigner.fromCreds(readFileSync(path, "utf8"));
      this.log.info("NATS credentials renewed", { until: new Date(answer.expiresAtMs ?? 0).toISOString() });
      this.scheduleRenewal();
    } catch (err) {
      // Again within a minute — sooner when the credentials expire sooner than that.
      const { exp } = jwtLifetime(this.signer!.jwt);
      const retryMs = Math.max(1000, Math.min(60_000, (exp * 1000 - Date.now()) / 4));
      this.log.warn("NATS credentials not renewed; trying again", { error: err, inMs: Math.round(retryMs) });
      this.scheduleRenewal(retryMs);
    }
  }

  /** A signed request to one coordinator, answered by it alone (evidence chunks, release parts, its clock). */
  private async ask(
    coordinator: string,
    topic: CoordinatorTopic,
    payload: Uint8Array,
    timeoutMs: number,
  ): Promise<Uint8Array> {
    const nc = this.nc;
    if (!nc || nc.isClosed()) {
      throw new DragnetError(Codes.UNAVAILABLE, `${topic}: NATS is not reachable now; try again later`);
    }
    const subject = this.subjects[topic](this.id, coordinator);
    try {
      const reply = await nc.request(subject, payload, {
        timeout: timeoutMs,
        headers: this.headersFor(subject, payload),
      });
      return reply.data;
    } catch (err) {
      throw new DragnetError(
        Codes.UNAVAILABLE,
        `${topic}: coordinator ${coordinator} did not answer (${(err as Error).message})`,
      );
    }
  }

  /** An alert from a module's service: kept until the alerts stream has it. */
  private raiseAlert(alert: Alert): void {
    this.log.info("alert", { source: alert.source, watch: alert.watch, changes: alert.changes.length });
    this.track(this.alerts.send(alert.id, "all", Alert.encode(alert).finish()).then(() => undefined));
  }

  private flushOutboxes(): void {
    this.track(this.results.flush(this.stopping.signal));
    this.track(this.alerts.flush(this.stopping.signal));
  }
}
