import { createPublicKey } from "node:crypto";
import { dirname, join } from "node:path";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { AgentVerifier } from "../common/agent-identity.js";
import {
  ApiAuthenticator,
  Codes,
  DragnetError,
  isSubjectToken,
  Keyring,
  type Logger,
  problemOf,
  Subjects,
  type TrustedInvestigator,
  VERSION,
} from "../common/mod.js";
import { enrollSubject } from "../common/nats-authority.js";
import { agentInboxPrefix, natsConnectOptions } from "../common/nats-link.js";
import type { ExportSinkStatus } from "../proto/api.js";
import { CommandStatus, ReleasePart, ReleaseRequest, TimeReply, TimeRequest } from "../proto/api.js";
import { ActionBook } from "./action-book.js";
import { AlertBook } from "./alert-book.js";
import { AuditLog } from "./audit-log.js";
import { ClusterDuty } from "./cluster-duty.js";
import type { CoordinatorConfig } from "./config.js";
import { authenticAgent, type CoordinatorCore, storedAtMs } from "./core.js";
import { Dispatcher } from "./dispatch.js";
import { EnrollmentDesk } from "./enrollment-desk.js";
import { EvidenceDesk } from "./evidence-desk.js";
import { DiskVault, ObjectVault } from "./evidence-vault.js";
import { Exporter } from "./exports/mod.js";
import { IncidentDesk } from "./incident-desk.js";
import { AgentIntake, CatchUp } from "./intake.js";
import { KeyedQueue } from "./keyed-queue.js";
import { LinkOutages } from "./link-outages.js";
import { loadJournalKey, Notebook } from "./notebook.js";
import { Notifier } from "./notifier.js";
import { PeerRelay } from "./peer-relay.js";
import { Queries } from "./queries.js";
import { AgentRegistry } from "./registry.js";
import { ReleaseShelf } from "./release-shelf.js";
import { ScheduleDesk } from "./schedule-desk.js";
import { openStore } from "./store/open.js";
import { SqliteStore } from "./store/sqlite-store.js";
import type { Store } from "./store/store.js";
import {
  alertsFeed,
  decodeOrRefuse,
  type FeedOptions,
  type Refusal,
  resultsFeed,
  StreamFeed,
} from "./stream-feed.js";
import { Submissions } from "./submissions.js";
import { WriteBatcher } from "./write-batcher.js";

// The coordinator, composed: the registry from heartbeats, actions verified
// and fanned out as one command per agent, acks and results ingested, state
// kept in the store, progress streamed to watchers. Each concern is a part of
// its own — intake (intake.ts), dispatch (dispatch.ts), submissions and
// approvals (submissions.ts), queries (queries.ts), and the desks for alerts,
// evidence, incidents, enrolment and releases — sharing one CoordinatorCore;
// this file only wires them and starts and stops them. The gRPC API
// (api/) is a thin layer over the parts.

/** A time request carries nothing (an empty message is 0 bytes): a few bytes of slack, no more. */
const MAX_TIME_REQUEST = 16;

/** The alerts consumer coordinators sharing a store read together. */
const SHARED_ALERTS_CONSUMER = "coordinators";
/** How often followers of alerts on one of several coordinators look for alerts the others stored. */
const FOLLOWERS_POLL_MS = 1000;

/** How much longer than the stream's ack wait a restarted coordinator waits for queued results before sending again. */
const CATCH_UP_MARGIN_MS = 2000;

export interface CoordinatorOptions {
  log: Logger;
  now?: () => number;
  /** The store, already open (Coordinator.open opens the one the config names). */
  store?: Store;
}

export class Coordinator {
  readonly registry: AgentRegistry;
  readonly intake: AgentIntake;
  readonly dispatcher: Dispatcher;
  readonly submissions: Submissions;
  readonly schedules: ScheduleDesk;
  /** Delivers stored records to the export sinks, each from its own cursor. */
  private exporter: Exporter;
  readonly queries: Queries;
  readonly alerts: AlertBook;
  readonly evidence: EvidenceDesk;
  readonly incidents: IncidentDesk;
  readonly enrollment: EnrollmentDesk;
  readonly releases: ReleaseShelf;
  readonly audit: AuditLog;
  private readonly core: CoordinatorCore;
  /** Agents whose credentials were revoked: what they send is refused, and they are sent nothing. */
  private readonly revoked: Set<string>;
  private readonly authenticator: ApiAuthenticator;
  private readonly catchUp = new CatchUp();
  private readonly feeds: StreamFeed[] = [];
  /** The results feed (of `feeds`): what a reconnect catches up on. */
  private resultsFeed?: StreamFeed;
  private nc?: NatsConnection;
  /** With several coordinators on one store: leases, taking over, leading (cluster-duty.ts). */
  private duty?: ClusterDuty;
  /** How the streams are read (set at start). */
  private feedOptions?: FeedOptions;
  /** Silent coordinators whose results and acks this one reads too. */
  private readonly readingFor = new Set<string>();
  private followersPoll?: NodeJS.Timeout;

  constructor(config: CoordinatorConfig, options: CoordinatorOptions) {
    const log = options.log;
    const now = options.now ?? Date.now;
    const subjects = new Subjects(config.subjectPrefix);
    const keyring = Keyring.load(config.keyring);
    const store: Store = options.store ?? new SqliteStore(config.database);
    const batcher = new WriteBatcher(store, log);
    // Filled from the store by start(), before anything is served.
    this.registry = new AgentRegistry(config.registry);
    this.revoked = new Set();
    const journalKey = loadJournalKey(config.journalKey);
    this.audit = new AuditLog(batcher, store, log, now, {
      id: config.id,
      key: journalKey,
      publicKey: createPublicKey(journalKey),
    });
    this.authenticator = new ApiAuthenticator(keyring);
    const core: CoordinatorCore = {
      config,
      log,
      now,
      subjects,
      keyring,
      store,
      batcher,
      registry: this.registry,
      book: new ActionBook(batcher, this.registry, log, now),
      audit: this.audit,
      pending: new Map(),
      agents: new AgentVerifier(config.agentAccount, config.subjectPrefix, now, (id) => this.revoked.has(id)),
      nats: () => this.nc,
      outages: new LinkOutages(),
      perAction: new KeyedQueue(),
      // Several coordinators on one store tell each other of the actions each dispatches.
      ...(store.cluster ? { peers: new PeerRelay(() => this.nc, subjects, log) } : {}),
    };
    this.core = core;
    const hostname = (agentId: string) => this.registry.get(agentId)?.hostname ?? "";
    const refused =
      (kind: string): Refusal =>
      (agentId, subject, p) =>
        this.intake.refused(kind, subject, agentId, p);

    this.queries = new Queries(core);
    this.alerts = new AlertBook(
      store,
      batcher,
      (m) => authenticAgent(core, m, storedAtMs(m)),
      log,
      refused("alert"),
      now,
    );
    this.evidence = new EvidenceDesk(
      config.evidenceDir,
      config.id,
      config.evidenceStore === "jetstream"
        ? new ObjectVault(() => this.connection(), config.results.replicas)
        : new DiskVault(config.evidenceDir),
      store,
      batcher,
      {
        action: (id) => {
          const open = core.book.get(id);
          if (!open) return undefined;
          return {
            incidentId: open.record.incidentId,
            collectors: open.record.signerNames,
            collects: open.body.operations.flatMap((op) =>
              op.module?.$case === "collect" ? [op.module.value] : [],
            ),
            targets: (agentId) => open.byAgent.has(agentId),
          };
        },
        hostname,
        ...(store.cluster ? { elsewhere: (id) => this.dispatchedElsewhere(id) } : {}),
      },
      (m) => authenticAgent(core, m),
      log,
      refused("evidence"),
      now,
    );
    this.incidents = new IncidentDesk({
      notebook: new Notebook(store, journalKey, keyring, log, now),
      notifier: new Notifier(config.notify, log),
      evidence: this.evidence,
      store,
      openAction: (id) => core.book.get(id),
      hostname,
      actionSummary: (id) => this.queries.actionSummary(id),
      untrusted: (actor, event, fields) => this.audit.untrusted("agents", actor, event, fields),
      log,
      now,
    });
    this.enrollment = new EnrollmentDesk({
      store,
      accountSeed: config.enrollmentAccountSeed,
      credentialsMs: config.enrollmentCredentialsMs,
      authenticate: (m) => {
        const agentId = core.subjects.agentOf(m.subject);
        if (!agentId)
          throw new DragnetError(Codes.SUBJECT_MISMATCH, `bad subject ${m.subject.slice(0, 200)}`);
        return { agentId, userKey: core.agents.check(agentId, m.subject, m.data, m.headers) };
      },
      prefix: config.subjectPrefix,
      knownAgent: (agentId) => this.registry.get(agentId) !== undefined,
      audit: (actor, event, fields) => this.audit.record(actor, event, fields),
      auditUntrusted: (actor, event, fields) => this.audit.untrusted("enrolment", actor, event, fields),
      log,
      now,
    });
    this.releases = new ReleaseShelf(
      () => this.connection(),
      config.results.replicas,
      join(dirname(config.database), "release-copies"),
    );
    this.dispatcher = new Dispatcher(core, (at) => this.catchUp.done(at));
    this.submissions = new Submissions(core, {
      dispatcher: this.dispatcher,
      queries: this.queries,
      incidents: this.incidents,
    });
    this.schedules = new ScheduleDesk(core, {
      dispatcher: this.dispatcher,
      queries: this.queries,
      alerts: this.alerts,
    });
    this.intake = new AgentIntake(core, {
      dispatcher: this.dispatcher,
      incidents: this.incidents,
      schedules: this.schedules,
      catchUp: this.catchUp,
    });
    // The notebook's pages are written in the background: they never reject (a failure is logged).
    core.book.onComplete = (action) => {
      void this.incidents.actionCompleted(action);
      this.schedules.runCompleted(action);
    };
    this.alerts.onAlert = (alert) => void this.incidents.alertStored(alert);
    this.evidence.onEvidence = (item) => this.incidents.evidenceStored(item);
    this.exporter = new Exporter(store.exportLog, config.exports, log.child({ part: "exports" }));
    if (store.cluster && core.peers) {
      const peers = core.peers;
      core.book.relay = (actionId, event) => peers.publish(actionId, event);
      this.duty = new ClusterDuty({
        cluster: store.cluster,
        book: core.book,
        audit: this.audit,
        log,
        id: config.id,
        leaseMs: config.leaseMs,
        takeOver: (from, actions) => this.takeOver(from, actions),
        readFor: (silent) => this.readFor(silent),
        // Export sinks are delivered to by the leader alone: one copy of each record, not one per coordinator.
        leadership: (leading) => this.exportWhileLeading(leading),
      });
      const duty = this.duty;
      this.dispatcher.leading = () => duty.leading();
    }
  }

  /**
   * The open actions of coordinators that fell silent, now this one's: loaded (verified again)
   * and dispatched from here, and what agents still send those coordinators read here too —
   * results from their durable consumers (shared with them should they come back), and acks.
   */
  private async takeOver(from: string[], actionIds: string[]): Promise<void> {
    const loaded = await this.dispatcher.reloadOpenActions(new Set(actionIds));
    this.core.log.info("took over open actions", { from, loaded });
    await this.readFor(from);
  }

  /** Results from the silent coordinators' durable consumers (shared with them should they return), and their acks. */
  private async readFor(silent: string[]): Promise<void> {
    const nc = this.nc;
    const feed = this.feedOptions;
    if (!nc || !feed) return;
    for (const other of silent) {
      if (this.readingFor.has(other) || other === this.core.config.id) continue;
      const results = new StreamFeed(nc, { ...feed, coordinator: other }, resultsFeed, this.core.log);
      await results.ensure();
      await results.consume((m) => this.intake.onStreamResult(m));
      this.feeds.push(results);
      this.intake.subscribeAcks(nc, other);
      this.answerAgentRequests(nc, other);
      this.readingFor.add(other);
      this.core.log.info("reading what agents send a silent coordinator", { coordinator: other });
    }
  }

  private exportWhileLeading(leading: boolean): void {
    const { store, config, log } = this.core;
    if (leading) {
      this.exporter.start();
      return;
    }
    const stopping = this.exporter;
    this.exporter = new Exporter(store.exportLog, config.exports, log.child({ part: "exports" }));
    stopping.stop().catch((err: unknown) => log.warn("export sinks not stopped cleanly", { error: err }));
  }

  /**
   * What a previous run left, taken up before anything is served: the agents,
   * the revoked ones, this coordinator's audit chain, and the actions open or
   * waiting for approval (each verified again).
   */
  private async load(): Promise<void> {
    const { store } = this.core;
    this.registry.restore(await store.loadAgents());
    for (const id of await store.revokedAgents()) this.revoked.add(id);
    await this.audit.load();
    // Several coordinators: only the actions this one dispatches (the others', their own).
    const cluster = store.cluster;
    await this.dispatcher.reloadOpenActions(
      cluster ? new Set(await cluster.owned(this.core.config.id)) : undefined,
    );
    await this.dispatcher.reloadPendingActions();
  }

  /** A coordinator on the store its config names (PostgreSQL is opened, and migrated, first). */
  static async open(config: CoordinatorConfig, options: CoordinatorOptions): Promise<Coordinator> {
    return new Coordinator(config, {
      ...options,
      store: options.store ?? (await openStore(config, options.log)),
    });
  }

  /**
   * Requests agents address to coordinator `id` — this one, or a silent one it took over (its
   * agents still ask it for evidence uploads, release parts and the time): answered at the asking
   * agent's own inbox, nowhere else.
   */
  private answerAgentRequests(nc: NatsConnection, id: string): void {
    const { subjects } = this.core;
    nc.subscribe(subjects.evidenceFor(id), {
      callback: (_e, m) => {
        if (this.fromAgentInbox(m)) this.evidence.onRequest(m);
      },
    });
    nc.subscribe(subjects.releasesFor(id), {
      callback: (_e, m) => {
        if (this.fromAgentInbox(m)) void this.serveRelease(m);
      },
    });
    nc.subscribe(subjects.timeFor(id), {
      callback: (_e, m) => {
        if (this.fromAgentInbox(m)) this.tellTime(m);
      },
    });
  }

  /** Several coordinators: whether another one dispatches an action (this one's book does not hold it). */
  private async dispatchedElsewhere(actionId: string): Promise<boolean> {
    const owner = await this.core.store.cluster?.ownerOf(actionId);
    return owner !== undefined && owner !== "" && owner !== this.core.config.id;
  }

  /** The NATS connection, once started. */
  private connection(): NatsConnection {
    if (!this.nc) throw new DragnetError(Codes.UNAVAILABLE, "the coordinator is not connected to NATS");
    return this.nc;
  }

  get subjects(): Subjects {
    return this.core.subjects;
  }

  async start(): Promise<void> {
    const { config, log } = this.core;
    await this.load();
    this.nc = await connect({
      ...natsConnectOptions(config.nats),
      name: `dragnet-coordinator ${VERSION}`,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
    });
    const nc = this.nc;
    this.watchLink(nc).catch((err) => log.error("NATS status watch ended", { error: err }));
    // One coordinator per fleet for now: each keeps its own store, so a queue
    // group would hand one coordinator results for commands only another knows.
    this.intake.subscribe(nc);
    this.answerAgentRequests(nc, config.id);
    if (config.enrollmentAccountSeed) {
      nc.subscribe(enrollSubject(config.subjectPrefix), {
        // One coordinator answers each request, however many share the store.
        queue: "dragnet-enroll",
        callback: (_e, m) => void this.enrollment.onMessage(m),
      });
      // One coordinator answers each renewal.
      nc.subscribe(`${config.subjectPrefix}.renew.*`, {
        queue: "dragnet-renew",
        callback: (_e, m) => void this.enrollment.onRenew(m),
      });
    }
    await nc.flush();
    // Results come from the JetStream stream. Until the ones that waited there
    // while this coordinator was down are in, nothing is sent again: an agent
    // that already answered must not be asked twice.
    const feed: FeedOptions = {
      prefix: config.subjectPrefix,
      coordinator: config.id,
      replicas: config.results.replicas,
      ackWaitMs: config.results.ackWaitMs,
    };
    this.feedOptions = feed;
    const results = new StreamFeed(nc, feed, resultsFeed, log);
    // Results a killed coordinator took but never acknowledged come back after the ack wait.
    this.catchUp.begin(
      await results.ensure(),
      this.core.now() + config.results.ackWaitMs + CATCH_UP_MARGIN_MS,
    );
    await results.consume((m) => this.intake.onStreamResult(m));
    // Several coordinators share one alerts consumer: each alert is stored (and put in its
    // incident's notebook) once, and followers everywhere read the store by sequence.
    const alerts = new StreamFeed(
      nc,
      this.duty ? { ...feed, coordinator: SHARED_ALERTS_CONSUMER } : feed,
      alertsFeed,
      log,
    );
    await alerts.ensure();
    await alerts.consume((m) => this.alerts.onMessage(m, (refused) => alerts.discard(refused)));
    this.feeds.push(results, alerts);
    this.resultsFeed = results;
    if (this.duty) {
      await this.duty.start();
      // Alerts another coordinator stored reach this one's followers too.
      // (And agents revoked through another coordinator are refused here too.)
      this.followersPoll = setInterval(() => {
        this.alerts.catchUpFollowers();
        this.learnRevocations().catch((err: unknown) =>
          log.warn("revocations of other coordinators not read; tried again", { error: err }),
        );
      }, FOLLOWERS_POLL_MS);
    }
    this.dispatcher.start();
    await this.schedules.start();
    // Several coordinators: the leader's (exportWhileLeading).
    if (!this.duty) this.exporter.start();
    log.info("coordinator started", { nats: nc.getServer(), agents: this.registry.size, version: VERSION });
  }

  /** Notes when the NATS link drops and returns: deadlines stand still meanwhile. */
  private async watchLink(nc: NatsConnection): Promise<void> {
    const { outages, log, now } = this.core;
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        outages.down(now());
        log.warn("disconnected from NATS: deadlines stand still until the link is back", {
          server: s.server,
        });
      } else if (s.type === "reconnect") {
        outages.up(now());
        log.info("reconnected to NATS", { server: s.server });
        this.catchUpAfterOutage();
      }
    }
  }

  /** Results that reached the stream while the link was down are read before anything times out or is sent again. */
  private catchUpAfterOutage(): void {
    const results = this.resultsFeed;
    const until = this.core.now() + this.core.config.results.ackWaitMs + CATCH_UP_MARGIN_MS;
    this.catchUp.begin(undefined, until);
    results
      ?.waiting()
      .then((waiting) => this.catchUp.begin(waiting, until))
      .catch((err) => this.core.log.warn("results backlog unknown after reconnecting", { error: err }));
  }

  /** Where each export sink has got to. */
  async exportStatus(): Promise<ExportSinkStatus[]> {
    return (await this.exporter.status()).map((s) => ({
      name: s.name,
      type: s.type,
      carries: s.carries,
      lag: s.lag,
      lastSuccessMs: s.lastSuccessMs,
      lastErrorMs: s.lastErrorMs,
      lastError: s.lastError,
      delivered: s.delivered,
      skipped: s.skipped,
      retrying: s.retrying,
    }));
  }

  async stop(): Promise<void> {
    clearInterval(this.followersPoll);
    await this.duty?.stop();
    this.schedules.stop();
    await this.exporter.stop();
    this.dispatcher.stop();
    this.evidence.stop();
    for (const feed of this.feeds) await feed.stop();
    this.core.book.stop();
    if (this.nc && !this.nc.isClosed()) await this.nc.drain().catch(() => undefined);
    await this.core.batcher.close();
    // Given up once everything is written: whoever takes the open actions over finds them as they are.
    await this.duty?.leave();
    await this.core.store.close();
  }

  /**
   * A part of a release, for an agent that runs an upgrade this coordinator
   * sent it (nobody else has a use for one): answered with the part or why not.
   */
  private async serveRelease(m: Msg): Promise<void> {
    let part: ReleasePart;
    let agentId: string | undefined;
    try {
      agentId = authenticAgent(this.core, m);
      const id = agentId;
      const upgrading = this.core.book
        .openCommandsFor(id)
        .some(({ action }) => action.body.operations.some((op) => op.module?.$case === "upgrade"));
      if (!upgrading) throw new DragnetError(Codes.NOT_ALLOWED, "no upgrade of this agent's is running");
      part = await this.releases.serve(decodeOrRefuse("release request", ReleaseRequest.decode, m.data));
    } catch (err) {
      const p = problemOf(err);
      if (DragnetError.is(err) && !DragnetError.is(err, Codes.NOT_FOUND))
        this.intake.refused("release request", m.subject, agentId, p);
      else if (!DragnetError.is(err))
        this.core.log.error("release not served", { subject: m.subject, error: err });
      part = { release: undefined, data: Buffer.alloc(0), problem: p };
    }
    m.respond(ReleasePart.encode(part).finish());
  }

  /**
   * Whether a request from an agent asks for its answer at that agent's own
   * inbox. An answer goes out with the coordinator's rights, which reach
   * every agent's command subject and the streams: a request naming any
   * other reply subject (stolen credentials trying to make the coordinator
   * publish for them) is dropped unanswered, and counted.
   */
  private fromAgentInbox(m: Msg): boolean {
    const agentId = this.core.subjects.agentOf(m.subject);
    if (agentId && m.reply?.startsWith(`${agentInboxPrefix(agentId)}.`)) return true;
    this.intake.refused(
      "agent request",
      m.subject,
      agentId,
      problemOf(
        new DragnetError(
          Codes.SUBJECT_MISMATCH,
          `reply subject ${String(m.reply).slice(0, 120)} is not the agent's own inbox: not answered`,
        ),
      ),
    );
    return false;
  }

  /**
   * The coordinator's clock, for an agent's timedrift module (which times the
   * exchange itself): only to a signed request that carries nothing.
   */
  private tellTime(m: Msg): void {
    let reply: TimeReply;
    let agentId: string | undefined;
    try {
      // The size first: a signature over a megabyte is not checked to learn it was too big.
      if (m.data.length > MAX_TIME_REQUEST)
        throw new DragnetError(
          Codes.TOO_LARGE,
          `time request of ${m.data.length} bytes (it carries nothing; at most ${MAX_TIME_REQUEST})`,
        );
      agentId = authenticAgent(this.core, m);
      decodeOrRefuse("time request", TimeRequest.decode, m.data);
      reply = { coordinatorTimeMs: this.core.now(), problem: undefined };
    } catch (err) {
      const p = problemOf(err);
      this.intake.refused("time request", m.subject, agentId, p);
      reply = { coordinatorTimeMs: 0, problem: p };
    }
    m.respond(TimeReply.encode(reply).finish());
  }

  /**
   * Refuses an agent's credentials for good: what it sends is refused from
   * now on, it leaves the registry (no target selects it), its open commands
   * are cancelled, and its credentials are never renewed. The NATS server
   * still lets it connect until its JWT expires.
   */
  async revokeAgent(
    agentId: string,
    reason: string,
    by: string,
  ): Promise<{ agentId: string; revoked: boolean; hostname: string }> {
    if (!isSubjectToken(agentId))
      throw new DragnetError(Codes.PARAMS, `"${agentId.slice(0, 64)}" is not an agent id`);
    const { store, audit, batcher } = this.core;
    const hostname = this.registry.get(agentId)?.hostname ?? "";
    const wasRevoked = this.revoked.has(agentId);
    if (!hostname && !wasRevoked && !(await store.enrolledKey(agentId))) {
      throw new DragnetError(Codes.NOT_FOUND, `no agent ${agentId}`);
    }
    // Refused from here on, while the store records it: a heartbeat meanwhile must not bring
    // its row back, nor one still waiting in the batcher once the row is gone.
    this.revoked.add(agentId);
    let revoked: boolean;
    try {
      await batcher.flush();
      revoked = await store.revokeAgent(agentId, this.core.now(), by, reason.slice(0, 500));
    } catch (err) {
      if (!wasRevoked) this.revoked.delete(agentId);
      throw err;
    }
    this.forgetRevoked(agentId, by);
    audit.record(by, "agent revoked", { agentId, message: `${hostname || agentId}: ${reason}` });
    return { agentId, revoked, hostname };
  }

  /** A revoked agent leaves the registry, and its open commands here are cancelled. */
  private forgetRevoked(agentId: string, by: string): void {
    const { book } = this.core;
    this.registry.forget(agentId);
    for (const { action, command } of book.openCommandsFor(agentId)) {
      book.transition(action, command, CommandStatus.COMMAND_STATUS_CANCELLED, {
        problem: { code: Codes.NOT_ALLOWED, message: `agent ${agentId} was revoked by ${by}` },
      });
    }
  }

  /** Several coordinators: an agent revoked through another is refused here too, within a poll. */
  private async learnRevocations(): Promise<void> {
    for (const agentId of await this.core.store.revokedAgents()) {
      if (this.revoked.has(agentId)) continue;
      this.revoked.add(agentId);
      this.forgetRevoked(agentId, "an investigator, through another coordinator");
      this.core.log.warn("agent revoked through another coordinator: refused here too", { agent: agentId });
    }
  }

  /** The investigator an API call comes from (throws UNAUTHENTICATED). */
  authenticate(token: string | undefined, method: string): TrustedInvestigator {
    return this.authenticator.authenticate(token, method, this.core.now());
  }

  counters() {
    return { ...this.intake.stats, agents: this.registry.size, alerts: this.alerts.counters() };
  }
}
