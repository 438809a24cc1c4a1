import type { JsMsg } from "@nats-io/jetstream";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import {
  ApiAuthenticator,
  Codes,
  DragnetError,
  Keyring,
  type Logger,
  newId,
  parseTarget,
  problemOf,
  Subjects,
  type TargetContext,
  type TargetExpr,
  VERSION,
  type VerifiedAction,
  verifySignedAction,
} from "../common/mod.js";
import { enrollSubject } from "../common/nats-authority.js";
import { natsConnectOptions } from "../common/nats-link.js";
import {
  AckStatus,
  type ActionBody,
  type ActionDetail,
  ActionState,
  type ActionSummary,
  type AgentInfo,
  type AgentResult,
  type ApproveActionResponse,
  type AuditEntry,
  CommandAck,
  CommandEnvelope,
  CommandResult,
  CommandStatus,
  Heartbeat,
  type Signature,
  SignedAction,
  type SubmitActionResponse,
} from "../proto/api.js";
import { ActionBook, type ActionListener, OpenAction, summarize } from "./action-book.js";
import { vetAction } from "./action-vetting.js";
import { AlertBook, type AlertFilter } from "./alert-book.js";
import { type AuditFields, AuditLog } from "./audit-log.js";
import { canTransition, countsOf, isFinal } from "./command-status.js";
import type { CoordinatorConfig } from "./config.js";
import { EnrollmentDesk } from "./enrollment-desk.js";
import { EvidenceDesk } from "./evidence-desk.js";
import { IncidentDesk } from "./incident-desk.js";
import { loadJournalKey, Notebook } from "./notebook.js";
import { Notifier } from "./notifier.js";
import { AgentRegistry, checkHeartbeat } from "./registry.js";
import { ReleaseShelf } from "./release-shelf.js";
import { SqliteStore } from "./store/sqlite-store.js";
import type { Store, StoredAction, StoredAgent, StoredCommand } from "./store/store.js";
import { alertsFeed, decodeOrRefuse, evidenceFeed, resultsFeed, StreamFeed } from "./stream-feed.js";
import { WriteBatcher } from "./write-batcher.js";

// The coordinator: registry from heartbeats, actions verified and fanned out
// as one command per agent, acks and results ingested, state kept in the
// store, progress streamed to watchers. The gRPC API (grpc-api.ts) is a thin
// layer over the public methods here.

const SWEEP_INTERVAL_MS = 1000;
/** A result without a problem clears whatever a timeout or expiry had recorded. */
const NO_PROBLEM = { code: "", message: "" };
/** A command sent but not acknowledged within this long is sent again (the publish may have been lost). */
const RESEND_AFTER_MS = 5000;
/** Refusals that no retry can change: the result is dropped from the stream. */
const REFUSED_FOR_GOOD = new Set<string>([Codes.DECODE, Codes.SUBJECT_MISMATCH, Codes.NOT_FOUND]);
/** A result that could not be stored comes back after this long. */
const NAK_DELAY_MS = 2000;
/** How much longer than the stream's ack wait a restarted coordinator waits for queued results before sending again. */
const CATCH_UP_MARGIN_MS = 2000;

/** Refuses a stored row that holds another action than the one it names (only a database edit does that). */
function checkStoredId(rowId: string, bodyId: string): void {
  if (bodyId !== rowId) {
    throw new DragnetError(Codes.ACTION_INVALID, `the stored row ${rowId} holds the signed action ${bodyId}`);
  }
}

export interface CoordinatorOptions {
  log: Logger;
  now?: () => number;
}

export class Coordinator {
  readonly subjects: Subjects;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly keyring: Keyring;
  private readonly authenticator: ApiAuthenticator;
  private readonly store: Store;
  private readonly batcher: WriteBatcher;
  readonly registry: AgentRegistry;
  private readonly book: ActionBook;
  /** Actions waiting for co-signatures (not in the book: they have no commands yet). */
  private readonly pending = new Map<string, StoredAction>();
  private nc?: NatsConnection;
  private results?: StreamFeed;
  private alertFeed?: StreamFeed;
  private evidenceFeed?: StreamFeed;
  readonly alerts: AlertBook;
  readonly evidence: EvidenceDesk;
  readonly incidents: IncidentDesk;
  readonly enrollment: EnrollmentDesk;
  readonly releases: ReleaseShelf;
  /** Results waiting in the stream at start, how many came in since, and when to stop waiting for the rest. */
  private readonly ingest = { backlog: 0, lastSeq: 0, seenSeqs: new Set<number>(), until: 0 };
  private sweeper?: NodeJS.Timeout;
  private readonly stats = { heartbeats: 0, results: 0, acks: 0, refused: 0 };
  private readonly auditLog: AuditLog;

  constructor(
    private readonly config: CoordinatorConfig,
    options: CoordinatorOptions,
  ) {
    this.log = options.log;
    this.now = options.now ?? Date.now;
    this.subjects = new Subjects(config.subjectPrefix);
    this.keyring = Keyring.load(config.keyring);
    this.authenticator = new ApiAuthenticator(this.keyring);
    this.store = new SqliteStore(config.database);
    this.batcher = new WriteBatcher(this.store, this.log);
    this.auditLog = new AuditLog(this.batcher, this.log, this.now);
    this.registry = new AgentRegistry(config.registry, this.store.loadAgents());
    this.book = new ActionBook(this.batcher, this.registry, this.log, this.now);
    const notebook = new Notebook(
      this.store,
      loadJournalKey(config.journalKey),
      this.keyring,
      this.log,
      this.now,
    );
    this.alerts = new AlertBook(
      this.store,
      this.batcher,
      this.subjects,
      this.log,
      (agentId, subject, p) => this.refused("alert", subject, agentId, p),
      this.now,
    );
    this.evidence = new EvidenceDesk(
      config.evidenceDir,
      this.store,
      this.batcher,
      this.subjects,
      {
        action: (id) => {
          this.batcher.flush();
          const a = this.store.getAction(id);
          if (!a) return undefined;
          const agents = new Set(this.store.commandsOf(id).map((c) => c.agentId));
          return {
            incidentId: a.incidentId,
            collectors: a.signerNames,
            collectsFrom: (agentId) => a.modules.includes("collect") && agents.has(agentId),
          };
        },
        hostname: (agentId) => this.registry.get(agentId)?.hostname ?? "",
      },
      this.log,
      (agentId, subject, p) => this.refused("evidence", subject, agentId, p),
      this.now,
    );
    this.incidents = new IncidentDesk({
      notebook,
      notifier: new Notifier(config.notify, this.log),
      evidence: this.evidence,
      store: this.store,
      openAction: (id) => this.book.get(id),
      hostname: (agentId) => this.registry.get(agentId)?.hostname ?? "",
      actionSummary: (id) => this.actionSummary(id),
      now: this.now,
    });
    this.enrollment = new EnrollmentDesk({
      store: this.store,
      accountSeed: config.enrollmentAccountSeed,
      prefix: config.subjectPrefix,
      knownAgent: (agentId) => this.registry.get(agentId) !== undefined,
      audit: (actor, event, fields) => this.audit(actor, event, fields),
      auditUntrusted: (actor, event, fields) => this.auditUntrusted(actor, event, fields),
      log: this.log,
      now: this.now,
    });
    this.releases = new ReleaseShelf(() => {
      if (!this.nc) throw new DragnetError(Codes.UNAVAILABLE, "the coordinator is not connected to NATS");
      return this.nc;
    }, config.results.replicas);
    this.book.onComplete = (action) => this.incidents.actionCompleted(action);
    this.alerts.onAlert = (alert) => this.incidents.alertStored(alert);
    this.evidence.onEvidence = (item) => this.incidents.evidenceStored(item);
    this.reloadOpenActions();
    this.reloadPendingActions();
  }

  async start(): Promise<void> {
    this.nc = await connect({
      ...natsConnectOptions(this.config.nats),
      name: `dragnet-coordinator ${VERSION}`,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
    });
    const nc = this.nc;
    // One coordinator per fleet for now: each keeps its own store, so a queue
    // group would hand one coordinator results for commands only another knows.
    nc.subscribe(this.subjects.allHeartbeats, {
      callback: (_e, m) => this.guard("heartbeat", m, this.onHeartbeat),
    });
    nc.subscribe(this.subjects.acksFor(this.config.id), {
      callback: (_e, m) => this.guard("ack", m, this.onAck),
    });
    if (this.config.enrollmentAccountSeed) {
      nc.subscribe(enrollSubject(this.config.subjectPrefix), {
        callback: (_e, m) => void this.enrollment.onMessage(m),
      });
    }
    await nc.flush();
    // Results come from the JetStream stream. Until the ones that waited there
    // while this coordinator was down are in, nothing is sent again: an agent
    // that already answered must not be asked twice.
    const feed = {
      prefix: this.config.subjectPrefix,
      coordinator: this.config.id,
      replicas: this.config.results.replicas,
      ackWaitMs: this.config.results.ackWaitMs,
    };
    this.results = new StreamFeed(nc, feed, resultsFeed, this.log);
    const waiting = await this.results.ensure();
    this.ingest.backlog = waiting.backlog;
    this.ingest.lastSeq = waiting.lastSeq;
    // Results a killed coordinator took but never acknowledged come back after the ack wait.
    this.ingest.until = this.now() + this.config.results.ackWaitMs + CATCH_UP_MARGIN_MS;
    await this.results.consume((m) => this.onStreamResult(m));
    this.alertFeed = new StreamFeed(nc, feed, alertsFeed, this.log);
    await this.alertFeed.ensure();
    await this.alertFeed.consume((m) => this.alerts.onMessage(m));
    this.evidenceFeed = new StreamFeed(nc, feed, evidenceFeed, this.log);
    await this.evidenceFeed.ensure();
    await this.evidenceFeed.consume((m) => this.evidence.onMessage(m));
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.log.info("coordinator started", {
      nats: nc.getServer(),
      agents: this.registry.size,
      version: VERSION,
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    await this.results?.stop();
    await this.alertFeed?.stop();
    await this.evidenceFeed?.stop();
    this.book.stop();
    if (this.nc && !this.nc.isClosed()) await this.nc.drain().catch(() => undefined);
    this.batcher.flush();
    this.store.close();
  }

  // ---- ingest ---------------------------------------------------------------

  /** Runs a handler so that no malformed message can take the coordinator down. */
  private guard(kind: string, msg: Msg, handler: (msg: Msg, agentId: string) => void): void {
    const agentId = this.subjects.agentOf(msg.subject);
    try {
      if (!agentId) throw new DragnetError(Codes.SUBJECT_MISMATCH, `bad subject ${msg.subject}`);
      handler.call(this, msg, agentId);
    } catch (err) {
      this.refused(kind, msg.subject, agentId, problemOf(err, Codes.DECODE));
    }
  }

  /** Counts, logs and audits (rate-limited) a message refused from NATS. */
  private refused(
    kind: string,
    subject: string,
    agentId: string | undefined,
    p: { code: string; message: string },
  ) {
    this.stats.refused++;
    this.log.warn(`${kind} refused`, { subject, code: p.code, reason: p.message });
    this.auditLog.untrusted(agentId ? `agent ${agentId}` : "unknown publisher", `${kind} refused`, {
      agentId: agentId ?? "",
      code: p.code,
      message: p.message,
    });
  }

  private onHeartbeat(msg: Msg, agentId: string): void {
    const hb = decodeOrRefuse("heartbeat", Heartbeat.decode, msg.data);
    if (hb.agentId !== agentId) {
      throw new DragnetError(Codes.SUBJECT_MISMATCH, `heartbeat for ${hb.agentId} published as ${agentId}`);
    }
    checkHeartbeat(hb);
    this.stats.heartbeats++;
    const effect = this.registry.observe(hb, this.now());
    if (effect.persist) this.batcher.agent(effect.agent);
    if (effect.isNew) this.log.info("agent enrolled", { agent: agentId, hostname: hb.hostname });
    if (effect.cameBack && this.caughtUp(this.now())) {
      for (const { action, command } of this.book.openCommandsFor(agentId)) {
        if (command.status === CommandStatus.COMMAND_STATUS_RUNNING) continue;
        this.dispatch(action, command);
      }
    }
  }

  private onAck(msg: Msg, agentId: string): void {
    const ack = decodeOrRefuse("ack", CommandAck.decode, msg.data);
    if (ack.agentId !== agentId)
      throw new DragnetError(Codes.SUBJECT_MISMATCH, `ack from ${ack.agentId} published as ${agentId}`);
    this.stats.acks++;
    const found = this.findCommand(ack.commandId, agentId);
    if (!found) {
      // A command the coordinator never sent: someone else published on the agent's subject.
      if (ack.status === AckStatus.ACK_STATUS_REJECTED) {
        this.auditLog.untrusted(`agent ${agentId}`, "refused a command the coordinator did not send", {
          agentId,
          code: ack.problem?.code,
          message: `command ${ack.commandId.slice(0, 40)}: ${ack.problem?.message ?? "no reason"}`,
        });
      }
      return;
    }
    const { action, command } = found;
    if (!action) return; // the action is complete; a late ack changes nothing
    if (ack.status === AckStatus.ACK_STATUS_REJECTED) {
      const problem = ack.problem ?? { code: Codes.INTERNAL, message: "rejected without a reason" };
      // A replay refusal of a command we re-sent means the agent already has it: keep waiting for its result.
      if (problem.code === Codes.REPLAY && !isFinal(command.status)) {
        // It has the command already (the first acknowledgement was lost): it is running, and its deadline counts.
        if (command.status !== CommandStatus.COMMAND_STATUS_RUNNING) {
          this.book.transition(action, command, CommandStatus.COMMAND_STATUS_RUNNING, {
            ackedAtMs: this.now(),
          });
        }
        return;
      }
      this.book.transition(action, command, CommandStatus.COMMAND_STATUS_REJECTED, { problem });
      this.audit(`agent ${agentId}`, "refused a command", {
        actionId: command.actionId,
        agentId,
        code: problem.code,
        message: problem.message,
      });
    } else if (ack.status === AckStatus.ACK_STATUS_RECEIVED || ack.status === AckStatus.ACK_STATUS_QUEUED) {
      this.book.transition(action, command, CommandStatus.COMMAND_STATUS_RUNNING, { ackedAtMs: this.now() });
      // Waiting in the agent's line: no deadline runs until it starts (or the agent goes offline).
      if (ack.status === AckStatus.ACK_STATUS_QUEUED) this.book.queued(command);
    } else if (ack.status === AckStatus.ACK_STATUS_STARTED && !isFinal(command.status)) {
      if (command.status !== CommandStatus.COMMAND_STATUS_RUNNING) {
        this.book.transition(action, command, CommandStatus.COMMAND_STATUS_RUNNING, {
          ackedAtMs: this.now(),
        });
      }
      this.book.started(command, this.now());
    }
  }

  /**
   * One result from the stream. It is acknowledged (and leaves the stream)
   * once it is committed to the store; a duplicate is acknowledged at once;
   * one that is refused is terminated, never handed out again.
   */
  private onStreamResult(m: JsMsg): void {
    // Results that were waiting at start are counted once each, however often they come.
    if (m.seq <= this.ingest.lastSeq) this.ingest.seenSeqs.add(m.seq);
    const agentId = this.subjects.agentOf(m.subject);
    try {
      if (!agentId) throw new DragnetError(Codes.SUBJECT_MISMATCH, `bad subject ${m.subject}`);
      this.onResult(m.data, agentId);
      // A duplicate too: its first copy may not be committed yet, and must not leave the stream before it is.
      this.batcher.afterCommit(() => m.ack());
    } catch (err) {
      const p = problemOf(err, Codes.DECODE);
      if (!REFUSED_FOR_GOOD.has(p.code)) {
        // Not the result's fault (the store is failing, say): it stays in the stream and comes back.
        this.log.error("result not stored; it will be handed out again", { subject: m.subject, ...p });
        m.nak(NAK_DELAY_MS);
        return;
      }
      m.term();
      this.refused("result", m.subject, agentId, p);
    }
  }

  /** Whether the results that waited in the stream while this coordinator was down are in. */
  private caughtUp(now: number): boolean {
    return this.ingest.seenSeqs.size >= this.ingest.backlog || now >= this.ingest.until;
  }

  /** Stores a result (a duplicate is recognised and dropped). */
  private onResult(data: Uint8Array, agentId: string): void {
    const result = decodeOrRefuse("result", CommandResult.decode, data);
    if (result.agentId !== agentId) {
      throw new DragnetError(Codes.SUBJECT_MISMATCH, `result from ${result.agentId} published as ${agentId}`);
    }
    const found = this.findCommand(result.commandId, agentId);
    if (!found) throw new DragnetError(Codes.NOT_FOUND, `result for unknown command ${result.commandId}`);
    const { action, command } = found;
    if (command.actionId !== result.actionId) {
      throw new DragnetError(
        Codes.SUBJECT_MISMATCH,
        `result names action ${result.actionId}, command belongs to ${command.actionId}`,
      );
    }
    const status = [
      CommandStatus.COMMAND_STATUS_SUCCESS,
      CommandStatus.COMMAND_STATUS_FAILED,
      CommandStatus.COMMAND_STATUS_TIMEOUT,
    ].includes(result.status)
      ? result.status
      : CommandStatus.COMMAND_STATUS_FAILED;
    // Stored once: a redelivered result is recognised and dropped.
    if (action ? action.answered.has(command.id) : this.store.hasResult(command.id)) return;
    action?.answered.add(command.id);
    this.stats.results++;
    this.batcher.result({
      commandId: command.id,
      actionId: command.actionId,
      agentId,
      found: result.found,
      payload: data,
      receivedAtMs: this.now(),
    });
    this.incidents.resultStored(command.actionId, agentId, result);
    const patch = { found: result.found, problem: result.problem ?? NO_PROBLEM, result };
    if (action) {
      this.book.transition(action, command, status, patch);
    } else if (canTransition(command.status, status)) {
      // The action completed before this result came (a late answer): record it all the same.
      command.status = status;
      command.found = result.found;
      command.updatedAtMs = this.now();
      command.problemCode = patch.problem.code;
      command.problemMessage = patch.problem.message;
      this.batcher.command(command);
    }
  }

  /** The command, checked to belong to the agent; `action` is set while the action is open. */
  private findCommand(
    commandId: string,
    agentId: string,
  ): { action?: OpenAction; command: StoredCommand } | undefined {
    if (!commandId) return undefined;
    const action = this.book.actionOfCommand(commandId);
    if (action) {
      const command = action.byId.get(commandId)!;
      if (command.agentId !== agentId) {
        throw new DragnetError(
          Codes.SUBJECT_MISMATCH,
          `agent ${agentId} answered command ${commandId} of agent ${command.agentId}`,
        );
      }
      return { action, command };
    }
    this.batcher.flush();
    const command = this.store.getCommand(commandId);
    if (!command) return undefined;
    if (command.agentId !== agentId) {
      throw new DragnetError(
        Codes.SUBJECT_MISMATCH,
        `agent ${agentId} answered command ${commandId} of agent ${command.agentId}`,
      );
    }
    return { command };
  }

  // ---- dispatch and expiry ---------------------------------------------------

  private dispatch(action: OpenAction, command: StoredCommand): void {
    if (!this.nc || this.nc.isClosed()) return;
    const now = this.now();
    if (now >= action.record.expiresAtMs) return;
    const envelope = CommandEnvelope.encode({
      commandId: command.id,
      action: action.signed,
      sentAtMs: now,
      coordinator: this.config.id,
    }).finish();
    this.nc.publish(this.subjects.command(command.agentId), envelope);
    this.book.transition(action, command, CommandStatus.COMMAND_STATUS_SENT, { sentAtMs: now });
  }

  /**
   * Every second: times out what was acknowledged but never answered, expires
   * what no agent received in time, and (re)sends what an agent that is
   * reachable has not acknowledged: commands published while it was briefly
   * away, or left pending by a coordinator restart. Re-sending is safe: an
   * agent never runs an action id twice.
   */
  sweep(): void {
    const now = this.now();
    for (const record of [...this.pending.values()]) {
      if (now < record.expiresAtMs) continue;
      this.pending.delete(record.id);
      record.state = ActionState.ACTION_STATE_UNAPPROVED;
      record.completedAtMs = now;
      this.batcher.action(record);
      this.audit("coordinator", "action expired unapproved", {
        actionId: record.id,
        code: Codes.EXPIRED,
        message: `nobody approved ${record.name} before it expired; it was never sent`,
      });
    }
    const caughtUp = this.caughtUp(now);
    for (const action of [...this.book.all()]) {
      const expired = now >= action.record.expiresAtMs;
      // The expiry bounds when agents may receive an action, not how long they run it.
      const deadline = (c: StoredCommand) =>
        c.ackedAtMs + action.record.timeoutMs + this.config.resultGraceMs;
      for (const command of [...action.byId.values()]) {
        if (isFinal(command.status)) continue;
        if (command.status === CommandStatus.COMMAND_STATUS_RUNNING) {
          const waiting = this.book.isQueued(command) && !this.registry.isOffline(command.agentId, now);
          if (!waiting && now > deadline(command)) {
            this.book.transition(action, command, CommandStatus.COMMAND_STATUS_TIMEOUT, {
              problem: {
                code: Codes.TIMEOUT,
                message: "the agent acknowledged the command but sent no result in time",
              },
            });
          }
        } else if (expired) {
          this.book.transition(action, command, CommandStatus.COMMAND_STATUS_EXPIRED, {
            problem: {
              code: Codes.EXPIRED,
              message:
                command.status === CommandStatus.COMMAND_STATUS_PENDING
                  ? "the agent stayed offline until the action expired"
                  : "the agent never acknowledged the command before the action expired",
            },
          });
        } else if (
          caughtUp &&
          !this.registry.isOffline(command.agentId, now) &&
          (command.status === CommandStatus.COMMAND_STATUS_PENDING ||
            now - command.sentAtMs >= RESEND_AFTER_MS)
        ) {
          this.dispatch(action, command);
        }
      }
    }
  }

  /** Actions waiting for approval, checked again: one changed in the database is closed, never offered. */
  private reloadPendingActions(): void {
    for (const record of this.store.pendingActions()) {
      try {
        const { body } = this.verifyStored(record).verified;
        if (body.target !== record.target || body.expiresAtMs !== record.expiresAtMs) {
          throw new DragnetError(Codes.ACTION_INVALID, "the stored summary does not match the signed action");
        }
        this.pending.set(record.id, record);
      } catch (err) {
        this.storedRefused(record.id, "not offered for approval", err);
        record.state = ActionState.ACTION_STATE_UNAPPROVED;
        record.completedAtMs = this.now();
        this.batcher.action(record);
      }
    }
  }

  /** A stored action's signatures checked again, and the row checked to hold the action it names. */
  private verifyStored(record: StoredAction): { signed: SignedAction; verified: VerifiedAction } {
    const signed = SignedAction.decode(record.signed);
    const verified = verifySignedAction(signed, this.keyring);
    checkStoredId(record.id, verified.body.id);
    return { signed, verified };
  }

  private storedRefused(actionId: string, outcome: string, err: unknown): void {
    const p = problemOf(err);
    this.log.error(`stored action no longer verifies; ${outcome}`, { action: actionId, ...p });
    this.audit("coordinator", `stored action no longer verifies; ${outcome}`, {
      actionId,
      code: p.code,
      message: p.message,
    });
  }

  private reloadOpenActions(): void {
    for (const record of this.store.openActions()) {
      try {
        const { signed, verified } = this.verifyStored(record);
        const body = verified.body;
        const modules = body.operations.map((op) => op.module?.$case ?? "unknown");
        const short = this.keyring.acl.shortfall(modules, verified.signers);
        if (short) {
          throw new DragnetError(
            Codes.WEIGHT,
            `stored as released, but ${short.module} needs weight ${short.required} and its signatures carry ${short.weight}`,
          );
        }
        const action = new OpenAction(record, signed, body, this.store.commandsOf(record.id));
        for (const r of this.store.resultsOf(record.id)) action.answered.add(r.commandId);
        this.book.add(action);
      } catch (err) {
        // Someone changed the database: nothing of this action is sent.
        this.storedRefused(record.id, "not sent", err);
        this.batcher.complete(record.id, this.now());
      }
    }
  }

  // ---- API -------------------------------------------------------------------

  /**
   * Accepts a signed action. If its signatures carry the weight every
   * operation's module needs (the coordinator's copy of the ACL), it is sent
   * at once; otherwise it waits, sent nowhere, for co-signatures (approve).
   */
  submit(signed: SignedAction | undefined, actor = "unknown"): SubmitActionResponse {
    const now = this.now();
    const { verified, body, modules, expr, shortfall } = vetAction(signed, this.keyring, now);
    this.batcher.flush();
    if (this.book.get(body.id) || this.pending.has(body.id) || this.store.getAction(body.id)) {
      throw new DragnetError(Codes.ACTION_INVALID, `action ${body.id} was already submitted`);
    }
    if (body.incidentId && !this.store.getIncident(body.incidentId)) {
      throw new DragnetError(
        Codes.NOT_FOUND,
        `no incident ${body.incidentId.slice(0, 40)}: open one with dragnet incident open (actions name an incident by its full id)`,
      );
    }
    const targets = this.targetsOf(expr, body.target, now);
    const record: StoredAction = {
      id: body.id,
      name: body.name,
      target: body.target,
      signed: SignedAction.encode(signed!).finish(),
      signerKeyIds: verified.signers.map((s) => s.keyId),
      signerNames: verified.signers.map((s) => s.name),
      modules,
      incidentId: body.incidentId,
      createdAtMs: body.createdAtMs,
      validFromMs: body.validFromMs,
      expiresAtMs: body.expiresAtMs,
      submittedAtMs: now,
      timeoutMs: body.timeoutMs || 60_000,
      state: ActionState.ACTION_STATE_RELEASED,
      weight: shortfall?.weight ?? verified.weight,
      requiredWeight: shortfall?.required ?? 0,
    };
    const signers = verified.signers.map((s) => s.name).join(", ");
    this.incidents.actionSubmitted(body, record.signerNames, shortfall !== undefined, actor);
    if (shortfall) {
      record.state = ActionState.ACTION_STATE_PENDING_APPROVAL;
      this.pending.set(record.id, record);
      this.batcher.action(record);
      this.audit(actor, "action held for approval", {
        actionId: body.id,
        message: `${body.name}: signed by ${signers}; ${shortfall.module} needs weight ${shortfall.required}, has ${shortfall.weight}`,
      });
      return {
        actionId: body.id,
        targeted: 0,
        offline: 0,
        pendingApproval: true,
        weight: shortfall.weight,
        requiredWeight: shortfall.required,
      };
    }
    const { targeted, offline } = this.release(record, signed!, body, now, targets);
    this.audit(actor, "action submitted", {
      actionId: body.id,
      message: `${body.name}: target ${body.target}; signed by ${signers}; ${targeted} agents (${offline} offline)`,
    });
    return {
      actionId: body.id,
      targeted,
      offline,
      pendingApproval: false,
      weight: verified.weight,
      requiredWeight: 0,
    };
  }

  /** Creates one command per targeted agent and sends them. */
  /** The agents a target selects now; refuses one that selects nobody. */
  private targetsOf(expr: TargetExpr, text: string, now: number): StoredAgent[] {
    const targets = this.registry.select(expr, this.targetContext(now));
    if (targets.length === 0)
      throw new DragnetError(Codes.NO_TARGET, `the target "${text}" selects no agent now`);
    return targets;
  }

  private release(
    record: StoredAction,
    signed: SignedAction,
    body: ActionBody,
    now: number,
    targets: StoredAgent[],
  ) {
    record.state = ActionState.ACTION_STATE_RELEASED;
    const commands: StoredCommand[] = targets.map((agent) => ({
      id: newId(now),
      actionId: body.id,
      agentId: agent.id,
      status: CommandStatus.COMMAND_STATUS_PENDING,
      problemCode: "",
      problemMessage: "",
      found: false,
      createdAtMs: now,
      sentAtMs: 0,
      ackedAtMs: 0,
      updatedAtMs: now,
    }));
    this.batcher.action(record);
    for (const c of commands) this.batcher.command(c);
    // Stored before anything is sent: a coordinator killed right after still knows every command it sent.
    this.batcher.flush();
    const action = new OpenAction(record, signed, body, commands);
    this.book.add(action);
    let offline = 0;
    for (const c of commands) {
      if (this.registry.isOffline(c.agentId, now)) offline++;
      else this.dispatch(action, c);
    }
    this.log.info("action released", {
      action: body.id,
      name: body.name,
      targeted: commands.length,
      offline,
    });
    return { targeted: commands.length, offline };
  }

  /**
   * Adds a co-signature over the same bytes to an action waiting for approval
   * and releases it once every operation has the weight it needs. A key that
   * already signed is refused: the same investigator counts once. Given the
   * caller's key id, the signature must be the caller's own.
   */
  approve(
    idOrPrefix: string,
    signature: Signature | undefined,
    actor = "unknown",
    actorKeyId?: string,
  ): ApproveActionResponse {
    const now = this.now();
    const id = this.resolveActionId(idOrPrefix);
    const record = this.pending.get(id);
    if (!record) {
      const state =
        this.book.get(id) || this.store.getAction(id)?.state === ActionState.ACTION_STATE_RELEASED;
      throw new DragnetError(
        Codes.APPROVAL,
        state
          ? `action ${id} does not need approval: it was already released`
          : `action ${id} is not waiting for approval`,
      );
    }
    if (!signature) throw new DragnetError(Codes.UNSIGNED, "the approval carries no signature");
    if (actorKeyId !== undefined && signature.keyId !== actorKeyId) {
      throw new DragnetError(
        Codes.APPROVAL,
        `${actor} sent a signature by key ${signature.keyId.slice(0, 32)}: an approval is signed with the approver's own key`,
      );
    }
    const current = SignedAction.decode(record.signed);
    const signer = this.keyring.get(signature.keyId);
    if (current.signatures.some((s) => s.keyId === signature.keyId)) {
      throw new DragnetError(
        Codes.APPROVAL,
        `${signer?.name ?? signature.keyId} already signed action ${id}; the same investigator counts once — another one must approve`,
      );
    }
    const signed: SignedAction = { body: current.body, signatures: [...current.signatures, signature] };
    const { verified, body, expr, shortfall } = vetAction(signed, this.keyring, now);
    checkStoredId(id, body.id);
    // Everything that can refuse comes before the record changes: a refused approval leaves no trace but the audit.
    const targets = shortfall ? [] : this.targetsOf(expr, body.target, now);
    record.signed = SignedAction.encode(signed).finish();
    record.signerKeyIds = verified.signers.map((s) => s.keyId);
    record.signerNames = verified.signers.map((s) => s.name);
    record.weight = shortfall?.weight ?? verified.weight;
    record.requiredWeight = shortfall?.required ?? record.requiredWeight;
    const by = signer?.name ?? signature.keyId;
    this.incidents.actionApproved(record, by, !shortfall, actor);
    if (shortfall) {
      this.batcher.action(record);
      this.audit(actor, "action co-signed", {
        actionId: id,
        message: `signed by ${by}; ${shortfall.module} still needs weight ${shortfall.required}, has ${shortfall.weight}`,
      });
      return {
        actionId: id,
        released: false,
        weight: shortfall.weight,
        requiredWeight: shortfall.required,
        targeted: 0,
        offline: 0,
      };
    }
    const { targeted, offline } = this.release(record, signed, body, now, targets);
    this.pending.delete(id);
    this.audit(actor, "action approved and released", {
      actionId: id,
      message: `approved by ${by}; signers ${record.signerNames.join(", ")}; ${targeted} agents (${offline} offline)`,
    });
    return {
      actionId: id,
      released: true,
      weight: verified.weight,
      requiredWeight: record.requiredWeight,
      targeted,
      offline,
    };
  }

  /** Records who did what in the audit log (stored, and logged). */
  audit(actor: string, event: string, fields: AuditFields = {}): void {
    this.auditLog.record(actor, event, fields);
  }

  /** Records what a source not yet trusted caused, rate-limited (see AuditLog.untrusted). */
  auditUntrusted(actor: string, event: string, fields: AuditFields = {}): void {
    this.auditLog.untrusted(actor, event, fields);
  }

  listAudit(limit: number, actionId: string): AuditEntry[] {
    this.batcher.flush();
    const id = actionId ? this.resolveActionId(actionId) : undefined;
    return this.store.listAudit(Math.min(Math.max(limit || 50, 1), 10_000), id);
  }

  private targetContext(now: number): TargetContext {
    return {
      now,
      matched: (actionId) => {
        this.batcher.flush();
        return new Set(this.store.matchedAgents(this.resolveActionId(actionId)));
      },
    };
  }

  agentInfo(agent: StoredAgent, now = this.now()): AgentInfo {
    return {
      id: agent.id,
      hostname: agent.hostname,
      os: agent.os,
      osRelease: agent.osRelease,
      arch: agent.arch,
      version: agent.version,
      addresses: agent.addresses,
      tags: agent.tags,
      isolated: agent.isolated,
      status: this.registry.status(agent, now),
      lastSeenMs: agent.lastSeenMs,
      startedAtMs: agent.startedAtMs,
      firstSeenMs: agent.firstSeenMs,
      upgradeState: agent.upgrade?.state ?? "",
      upgradeVersion: agent.upgrade?.version ?? "",
      upgradeDetail: agent.upgrade?.detail ?? "",
    };
  }

  listAgents(target: string): AgentInfo[] {
    const now = this.now();
    const agents = target.trim()
      ? this.registry.select(parseTarget(target), this.targetContext(now))
      : this.registry.all();
    return agents
      .sort((a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id))
      .map((a) => this.agentInfo(a, now));
  }

  /** A full action id from an id or unambiguous prefix. */
  resolveActionId(idOrPrefix: string): string {
    const prefix = idOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-z]{1,26}$/.test(prefix))
      throw new DragnetError(Codes.NOT_FOUND, `"${idOrPrefix}" is not an action id`);
    if (this.book.get(prefix)) return prefix;
    this.batcher.flush();
    const ids = this.store.actionIdsByPrefix(prefix, 2);
    if (ids.length === 0) throw new DragnetError(Codes.NOT_FOUND, `no action ${idOrPrefix}`);
    if (ids.length > 1 && ids[0] !== prefix) {
      throw new DragnetError(
        Codes.AMBIGUOUS,
        `"${idOrPrefix}" matches several actions; give more characters`,
      );
    }
    return ids[0]!;
  }

  actionSummary(id: string): ActionSummary {
    const open = this.book.get(id);
    if (open) return this.book.summary(open);
    this.batcher.flush();
    const record = this.store.getAction(id);
    if (!record) throw new DragnetError(Codes.NOT_FOUND, `no action ${id}`);
    return summarize(record, countsOf(this.store.commandsOf(id)));
  }

  getAction(idOrPrefix: string, includeResults: boolean): ActionDetail {
    const id = this.resolveActionId(idOrPrefix);
    const summary = this.actionSummary(id);
    const record = this.store.getAction(id);
    return {
      summary,
      results: includeResults ? this.agentResults(id) : [],
      action: record ? SignedAction.decode(record.signed) : undefined,
    };
  }

  /** Every command of an action with its result where there is one. */
  agentResults(actionId: string): AgentResult[] {
    this.batcher.flush();
    const payloads = new Map(this.store.resultsOf(actionId).map((r) => [r.commandId, r.payload]));
    const open = this.book.get(actionId);
    const commands = open ? [...open.byId.values()] : this.store.commandsOf(actionId);
    return commands.map((c) => {
      const payload = payloads.get(c.id);
      return this.book.agentResult(c, payload ? CommandResult.decode(payload) : undefined);
    });
  }

  listActions(limit: number, pendingOnly = false): ActionSummary[] {
    this.batcher.flush();
    return this.store
      .listActions(Math.min(Math.max(limit || 20, 1), 1000), pendingOnly)
      .map((r) => this.actionSummary(r.id));
  }

  /** The investigator an API call comes from (throws UNAUTHENTICATED). */
  authenticate(token: string | undefined, method: string) {
    return this.authenticator.authenticate(token, method, this.now());
  }

  /**
   * Streams an action: its summary now, every final result so far, then each
   * change as it happens, and `done` when every command is final.
   */
  watch(idOrPrefix: string, send: ActionListener, end: () => void): () => void {
    const id = this.resolveActionId(idOrPrefix);
    const open = this.book.get(id);
    if (!open) {
      send({ event: { $case: "progress", value: this.actionSummary(id) } });
      for (const r of this.agentResults(id))
        if (isFinal(r.status)) send({ event: { $case: "result", value: r } });
      send({ event: { $case: "done", value: this.actionSummary(id) } });
      end();
      return () => undefined;
    }
    // Commit (and deliver) everything pending first, then subscribe and replay
    // in the same tick: no event is missed and none is seen twice.
    this.batcher.flush();
    const unsubscribe = this.book.subscribe(id, (event) => {
      send(event);
      if (event.event?.$case === "done") end();
    });
    send({ event: { $case: "progress", value: this.book.summary(open) } });
    for (const r of this.agentResults(id))
      if (isFinal(r.status)) send({ event: { $case: "result", value: r } });
    return unsubscribe;
  }

  /** Which agents a target expression selects now, for filtering alerts; none given: every agent. */
  alertFilter(target: string): AlertFilter {
    if (!target.trim()) return {};
    return {
      agents: new Set(
        this.registry.select(parseTarget(target), this.targetContext(this.now())).map((a) => a.id),
      ),
    };
  }

  counters() {
    return { ...this.stats, agents: this.registry.size, alerts: this.alerts.counters() };
  }
}
