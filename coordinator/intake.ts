import type { JsMsg } from "@nats-io/jetstream";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { Codes, DragnetError, problemOf } from "../common/mod.js";
import { AckStatus, CommandAck, CommandResult, CommandStatus, Heartbeat } from "../proto/api.js";
import type { OpenAction } from "./action-book.js";
import { canTransition, isFinal } from "./command-status.js";
import { authenticAgentAsync, type CoordinatorCore, storedAtMs } from "./core.js";
import type { Dispatcher } from "./dispatch.js";
import type { IncidentDesk } from "./incident-desk.js";
import { KeyedQueue } from "./keyed-queue.js";
import { MinuteBudget } from "./minute-budget.js";
import { checkHeartbeat } from "./registry.js";
import type { ScheduleDesk } from "./schedule-desk.js";
import type { StoredCommand } from "./store/store.js";
import { decodeOrRefuse } from "./stream-feed.js";

// Intake of what agents send: heartbeats (the registry), acknowledgements
// (a command's state) and results from the JetStream stream (stored once,
// acknowledged to the stream only once committed). Anything malformed or
// published in another agent's name is refused, counted and audited; the
// coordinator keeps running.

/** A result without a problem clears whatever a timeout or expiry had recorded. */
const NO_PROBLEM = { code: "", message: "" };
/** Refusals that no retry can change: the result is dropped from the stream. */
const REFUSED_FOR_GOOD = new Set<string>([
  Codes.DECODE,
  Codes.SUBJECT_MISMATCH,
  Codes.NOT_FOUND,
  Codes.AGENT_UNSIGNED,
  Codes.AGENT_SIGNATURE,
]);
/** A result that could not be stored comes back after this long. */
const NAK_DELAY_MS = 2000;

/**
 * Results that waited in the stream while the coordinator was down (or its
 * NATS link was): until they are in (or the stream's ack wait has passed),
 * nothing is sent again — an agent that already answered must not be asked
 * twice — and nothing times out: a result in the stream is not a missing one.
 */
export class CatchUp {
  private backlog = 0;
  private lastSeq = 0;
  private readonly seenSeqs = new Set<number>();
  private until = 0;

  /**
   * What the stream held at start (or when the NATS link came back), and how
   * long to wait for it at most; without `waiting` (not known yet), everything
   * is waited for until `until`.
   */
  begin(waiting: { backlog: number; lastSeq: number } | undefined, until: number): void {
    this.backlog = waiting?.backlog ?? Number.POSITIVE_INFINITY;
    this.lastSeq = waiting?.lastSeq ?? Number.MAX_SAFE_INTEGER;
    this.seenSeqs.clear();
    this.until = until;
  }

  /** Results that were waiting at start are counted once each, however often they come. */
  seen(seq: number): void {
    if (seq <= this.lastSeq) this.seenSeqs.add(seq);
  }

  done(now: number): boolean {
    return this.seenSeqs.size >= this.backlog || now >= this.until;
  }
}

/** Refusals logged per agent and minute; the rest are counted in one line. */
const REFUSALS_LOGGED_PER_MINUTE = 20;

export class AgentIntake {
  readonly stats = { heartbeats: 0, results: 0, acks: 0, refused: 0 };
  private readonly logBudget = new MinuteBudget<string>(REFUSALS_LOGGED_PER_MINUTE);
  /**
   * Results of commands whose action is no longer open, one at a time per
   * command: each reads the store before it writes, and a copy delivered
   * again meanwhile must find the first one stored, not store it twice.
   */
  private readonly lateResults = new KeyedQueue();

  constructor(
    private readonly core: CoordinatorCore,
    private readonly parts: {
      dispatcher: Dispatcher;
      incidents: IncidentDesk;
      schedules: ScheduleDesk;
      catchUp: CatchUp;
    },
  ) {}

  /** Heartbeats from every agent, and the acks of the commands this coordinator sent. */
  subscribe(nc: NatsConnection): void {
    const { subjects, config } = this.core;
    nc.subscribe(subjects.allHeartbeats, {
      callback: (_e, m) => this.guard("heartbeat", m, (msg, agentId) => this.onHeartbeat(msg, agentId)),
    });
    this.subscribeAcks(nc, config.id);
  }

  /** Acks addressed to a coordinator: this one, or one whose open actions this one took over. */
  subscribeAcks(nc: NatsConnection, coordinatorId: string): Subscription {
    return nc.subscribe(this.core.subjects.acksFor(coordinatorId), {
      callback: (_e, m) => this.guard("ack", m, (msg, agentId) => this.onAck(msg, agentId)),
    });
  }

  /**
   * Counts, logs and audits (rate-limited) a message refused from NATS. One
   * that its agent did not sign is not that agent's doing: it is put down to
   * an unknown publisher, with the subject it came on.
   */
  refused(kind: string, subject: string, agentId: string | undefined, p: { code: string; message: string }) {
    this.stats.refused++;
    // Logged at most REFUSALS_LOGGED_PER_MINUTE a minute per agent: a stolen credential must not fill the disk.
    const logged = this.logBudget.take(agentId ?? "", this.core.now(), (count, since) =>
      this.core.log.warn("refusals not logged", {
        agent: agentId || undefined,
        count,
        since: new Date(since).toISOString(),
      }),
    );
    if (logged) this.core.log.warn(`${kind} refused`, { subject, code: p.code, reason: p.message });
    const signed = agentId && p.code !== Codes.AGENT_UNSIGNED && p.code !== Codes.AGENT_SIGNATURE;
    this.core.audit.untrusted(
      "agents",
      signed ? `agent ${agentId}` : "unknown publisher",
      `${kind} refused`,
      {
        agentId: signed ? agentId : "",
        code: p.code,
        message: signed ? p.message : `${p.message} (on ${subject.slice(0, 200)})`,
      },
    );
  }

  /**
   * Runs a handler on a message its agent signed, so that no forged or malformed message takes effect or the
   * coordinator down. The signature is verified off the event loop, so messages are handled in the order
   * their verifications end (an agent's ack may come after its result: a final state never moves back).
   * A handler returns a promise only when it has to read the store; whatever it fails with is refused.
   */
  private guard(
    kind: string,
    msg: Msg,
    handler: (msg: Msg, agentId: string) => Promise<void> | undefined,
  ): void {
    const refuse = (err: unknown) =>
      this.refused(kind, msg.subject, this.core.subjects.agentOf(msg.subject), problemOf(err, Codes.DECODE));
    authenticAgentAsync(this.core, msg)
      .then((agentId) => handler(msg, agentId))
      .catch(refuse);
  }

  private onHeartbeat(msg: Msg, agentId: string): undefined {
    const hb = decodeOrRefuse("heartbeat", Heartbeat.decode, msg.data);
    if (hb.agentId !== agentId) {
      throw new DragnetError(Codes.SUBJECT_MISMATCH, `heartbeat for ${hb.agentId} published as ${agentId}`);
    }
    checkHeartbeat(hb);
    this.stats.heartbeats++;
    this.core.outages.heard(agentId, this.core.now());
    const effect = this.core.registry.observe(hb, this.core.now());
    if (effect.persist) this.core.batcher.agent(effect.agent);
    if (effect.isNew) this.core.log.info("agent enrolled", { agent: agentId, hostname: hb.hostname });
    if (effect.cameBack) {
      // Stops first: a stopped schedule's run is refused by an agent that hears of the stop before it.
      this.parts.schedules.agentCameBack(agentId);
      this.parts.dispatcher.agentCameBack(agentId);
    }
    return undefined;
  }

  private onAck(msg: Msg, agentId: string): Promise<void> | undefined {
    const ack = decodeOrRefuse("ack", CommandAck.decode, msg.data);
    if (ack.agentId !== agentId)
      throw new DragnetError(Codes.SUBJECT_MISMATCH, `ack from ${ack.agentId} published as ${agentId}`);
    this.stats.acks++;
    const open = this.openCommand(ack.commandId, agentId);
    if (open) {
      this.applyAck(ack, open.action, open.command, agentId);
      return undefined;
    }
    return this.ackOfNoOpenCommand(ack, agentId);
  }

  /** An ack of a command of no open action: of a complete one it changes nothing; of none, someone else sent it. */
  private async ackOfNoOpenCommand(ack: CommandAck, agentId: string): Promise<void> {
    if (await this.storedCommand(ack.commandId, agentId)) return; // the action is complete; a late ack changes nothing
    // A command the coordinator never sent: someone else published on the agent's subject.
    if (ack.status === AckStatus.ACK_STATUS_REJECTED) {
      this.core.audit.untrusted(
        "agents",
        `agent ${agentId}`,
        "refused a command the coordinator did not send",
        {
          agentId,
          code: ack.problem?.code,
          message: `command ${ack.commandId.slice(0, 40)}: ${ack.problem?.message ?? "no reason"}`,
        },
      );
    }
  }

  private applyAck(ack: CommandAck, action: OpenAction, command: StoredCommand, agentId: string): void {
    const { book, audit } = this.core;
    const now = this.core.now();
    const running = () => {
      if (command.status !== CommandStatus.COMMAND_STATUS_RUNNING) {
        book.transition(action, command, CommandStatus.COMMAND_STATUS_RUNNING, { ackedAtMs: now });
      }
    };
    if (ack.status === AckStatus.ACK_STATUS_REJECTED) {
      const problem = ack.problem ?? { code: Codes.INTERNAL, message: "rejected without a reason" };
      // A replay refusal of a command we re-sent means the agent already has it
      // (the first acknowledgement was lost): it is running, and its deadline counts.
      if (problem.code === Codes.REPLAY && !isFinal(command.status)) {
        running();
        return;
      }
      book.transition(action, command, CommandStatus.COMMAND_STATUS_REJECTED, { problem });
      audit.record(`agent ${agentId}`, "refused a command", {
        actionId: command.actionId,
        agentId,
        code: problem.code,
        message: problem.message,
      });
    } else if (ack.status === AckStatus.ACK_STATUS_RECEIVED || ack.status === AckStatus.ACK_STATUS_QUEUED) {
      book.transition(action, command, CommandStatus.COMMAND_STATUS_RUNNING, { ackedAtMs: now });
      // Waiting in the agent's line: no deadline runs until it starts (or the agent goes offline).
      if (ack.status === AckStatus.ACK_STATUS_QUEUED) book.queued(command);
    } else if (ack.status === AckStatus.ACK_STATUS_STARTED && !isFinal(command.status)) {
      running();
      book.started(command, now);
    }
  }

  /**
   * One result from the stream. It is acknowledged (and leaves the stream)
   * once it is committed to the store; a duplicate is acknowledged at once;
   * one that is refused is terminated, never handed out again.
   */
  onStreamResult(m: JsMsg): void {
    this.parts.catchUp.seen(m.seq);
    const agentId = this.core.subjects.agentOf(m.subject);
    // A duplicate too: its first copy may not be committed yet, and must not leave the stream before it is.
    const stored = () => this.core.batcher.afterCommit(() => m.ack());
    const failed = (err: unknown) => {
      const p = problemOf(err);
      if (p.code === Codes.ELSEWHERE) {
        m.nak(NAK_DELAY_MS / 4);
        return;
      }
      if (!REFUSED_FOR_GOOD.has(p.code)) {
        // Not the result's fault (the store is failing, say): it stays in the stream and comes back.
        this.core.log.error("result not stored; it will be handed out again", { subject: m.subject, ...p });
        m.nak(NAK_DELAY_MS);
        return;
      }
      m.term();
      this.refused("result", m.subject, agentId, p);
    };
    authenticAgentAsync(this.core, m, storedAtMs(m))
      .then((sender) => this.onResult(m.data, sender, m.subject))
      .then(stored, failed)
      // Telling the stream fails only with the connection (the coordinator stopping): logged, not thrown.
      .catch((err: unknown) =>
        this.core.log.warn("result's outcome not told to the stream", { subject: m.subject, error: err }),
      );
  }

  /**
   * Stores a result (a duplicate is recognised and dropped): at once for an open action's command;
   * for any other, once the store has said what became of its command (the promise returned).
   */
  private onResult(data: Uint8Array, agentId: string, subject: string): Promise<void> | undefined {
    const result = decodeOrRefuse("result", CommandResult.decode, data);
    if (result.agentId !== agentId) {
      throw new DragnetError(Codes.SUBJECT_MISMATCH, `result from ${result.agentId} published as ${agentId}`);
    }
    if (!subject.endsWith(`.${result.commandId}`)) {
      throw new DragnetError(
        Codes.SUBJECT_MISMATCH,
        `the result of command ${result.commandId.slice(0, 64)} came on ${subject}`,
      );
    }
    const open = this.openCommand(result.commandId, agentId);
    if (open) {
      checkActionOf(open.command, result);
      this.record(result, data, agentId, open.command, open.action);
      return undefined;
    }
    return this.lateResults.run(result.commandId, async () => {
      const command = await this.storedCommand(result.commandId, agentId);
      if (!command) throw new DragnetError(Codes.NOT_FOUND, `result for unknown command ${result.commandId}`);
      checkActionOf(command, result);
      await this.notDispatchedElsewhere(command.actionId);
      // Stored once: a redelivered result is recognised and dropped.
      if (await this.core.store.hasResult(command.id)) return;
      // The action completed before this result came (a late answer): recorded all the same.
      this.record(result, data, agentId, command, undefined);
    });
  }

  /** A result of a command (of an open action, or of a complete one when `action` is undefined), stored once. */
  private record(
    result: CommandResult,
    data: Uint8Array,
    agentId: string,
    command: StoredCommand,
    action: OpenAction | undefined,
  ): void {
    const { batcher, book } = this.core;
    const status = [
      CommandStatus.COMMAND_STATUS_SUCCESS,
      CommandStatus.COMMAND_STATUS_FAILED,
      CommandStatus.COMMAND_STATUS_TIMEOUT,
    ].includes(result.status)
      ? result.status
      : CommandStatus.COMMAND_STATUS_FAILED;
    if (action?.answered.has(command.id)) return; // stored once: a redelivered result is dropped
    action?.answered.add(command.id);
    this.stats.results++;
    batcher.result({
      commandId: command.id,
      actionId: command.actionId,
      agentId,
      found: result.found,
      payload: data,
      receivedAtMs: this.core.now(),
    });
    this.parts.incidents.resultStored(command.actionId, agentId, result);
    this.parts.schedules.resultStored(command.actionId, agentId, result);
    const patch = { found: result.found, problem: result.problem ?? NO_PROBLEM, result };
    if (action) {
      book.transition(action, command, status, patch);
    } else if (canTransition(command.status, status)) {
      // The action completed before this result came (a late answer): record it all the same.
      command.status = status;
      command.found = result.found;
      command.updatedAtMs = this.core.now();
      command.problemCode = patch.problem.code;
      command.problemMessage = patch.problem.message;
      batcher.command(command);
    }
  }

  /**
   * Several coordinators: a result of an open action another one dispatches is that one's to
   * take (its book waits for it). Refused for now, not for good: the stream hands it out again,
   * to whichever coordinator reads this results feed next (the dispatcher once it took it over).
   */
  private async notDispatchedElsewhere(actionId: string): Promise<void> {
    const { store, config } = this.core;
    if (!store.cluster) return;
    const action = await store.getAction(actionId);
    if (!action || action.completedAtMs !== undefined) return;
    const owner = await store.cluster.ownerOf(actionId);
    // Ours too: open, yet not found in the book, it is being taken over (loaded from the store)
    // right now, or was loaded since the book was asked. Stored beside the book, the result could
    // land after the load read its command as pending: the book would send the command again,
    // count the agent's "already ran" as running, and wait for a result the stream no longer holds
    // (it was acknowledged once stored). Handed back, it comes again and goes through the book.
    if (owner) {
      throw new DragnetError(
        Codes.ELSEWHERE,
        owner === config.id
          ? `action ${actionId} is being taken over here`
          : `action ${actionId} is dispatched by coordinator ${owner}`,
      );
    }
  }

  /** The command of an open action, checked to belong to the agent (in memory: answered at once). */
  private openCommand(
    commandId: string,
    agentId: string,
  ): { action: OpenAction; command: StoredCommand } | undefined {
    const action = commandId ? this.core.book.actionOfCommand(commandId) : undefined;
    if (!action) return undefined;
    const command = action.byId.get(commandId)!;
    checkAgentOf(command, commandId, agentId);
    return { action, command };
  }

  /** A command of no open action, as stored, checked to belong to the agent. */
  private async storedCommand(commandId: string, agentId: string): Promise<StoredCommand | undefined> {
    if (!commandId) return undefined;
    await this.core.batcher.flush();
    const command = await this.core.store.getCommand(commandId);
    if (command) checkAgentOf(command, commandId, agentId);
    return command;
  }
}

function checkActionOf(command: StoredCommand, result: CommandResult): void {
  if (command.actionId !== result.actionId) {
    throw new DragnetError(
      Codes.SUBJECT_MISMATCH,
      `result names action ${result.actionId}, command belongs to ${command.actionId}`,
    );
  }
}

function checkAgentOf(command: StoredCommand, commandId: string, agentId: string): void {
  if (command.agentId !== agentId) {
    throw new DragnetError(
      Codes.SUBJECT_MISMATCH,
      `agent ${agentId} answered command ${commandId} of agent ${command.agentId}`,
    );
  }
}
