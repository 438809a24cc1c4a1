import { aclNameOf, Codes, DragnetError, newId, problemOf } from "../common/mod.js";
import {
  type ActionBody,
  ActionState,
  CommandEnvelope,
  CommandStatus,
  type SignedAction,
} from "../proto/api.js";
import { OpenAction } from "./action-book.js";
import { isFinal } from "./command-status.js";
import { type CoordinatorCore, verifyStored } from "./core.js";
import type { StoredAction, StoredAgent, StoredCommand } from "./store/store.js";

// Dispatch: the commands of released actions go out on each agent's subject
// and are sent again until acknowledged; what was acknowledged but never
// answered times out, what no agent received in time expires, and so does an
// action nobody approved. At start, the actions a previous run left open or
// waiting are taken up again, each verified anew.

const SWEEP_INTERVAL_MS = 1000;
/** A command sent but not acknowledged within this long is sent again (the publish may have been lost). */
const RESEND_AFTER_MS = 5000;
const EMPTY_ENVELOPE = CommandEnvelope.fromPartial({});

export class Dispatcher {
  private sweeper?: NodeJS.Timeout;
  /** Each open action's part of its commands' envelopes (action, coordinator, run), encoded once. */
  private readonly envelopes = new WeakMap<OpenAction, Uint8Array>();
  /** The store's unapproved actions are being expired (several coordinators). */
  private expiring = false;
  /** Whether this coordinator does what one of several must do once (set by the cluster duty). */
  leading: () => boolean = () => true;

  constructor(
    private readonly core: CoordinatorCore,
    /** Whether the results that waited in the stream at start are in: until then nothing is sent again. */
    private readonly caughtUp: (now: number) => boolean,
  ) {}

  start(): void {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  dispatch(action: OpenAction, command: StoredCommand): void {
    const { book, config, subjects } = this.core;
    const nc = this.core.nats();
    if (!nc || nc.isClosed()) return;
    const now = this.core.now();
    if (now >= action.record.expiresAtMs) return;
    // What every command of the action carries is encoded once; a protobuf message is the
    // concatenation of its fields, so each command adds only its id and time.
    let shared = this.envelopes.get(action);
    if (!shared) {
      shared = CommandEnvelope.encode({
        commandId: "",
        action: action.signed,
        sentAtMs: 0,
        coordinator: config.id,
        // A schedule's run: its number (the record says it; the agent derives the run from it).
        run: action.record.run ?? 0,
        stop: undefined,
      }).finish();
      this.envelopes.set(action, shared);
    }
    const own = CommandEnvelope.encode({
      ...EMPTY_ENVELOPE,
      commandId: command.id,
      sentAtMs: now,
    }).finish();
    nc.publish(subjects.command(command.agentId), Buffer.concat([own, shared]));
    book.transition(action, command, CommandStatus.COMMAND_STATUS_SENT, { sentAtMs: now });
  }

  /** Sends again what an agent that just came back has not acknowledged. */
  agentCameBack(agentId: string): void {
    if (!this.caughtUp(this.core.now())) return;
    for (const { action, command } of this.core.book.openCommandsFor(agentId)) {
      if (command.status === CommandStatus.COMMAND_STATUS_RUNNING) continue;
      this.dispatch(action, command);
    }
  }

  /** Creates one command per targeted agent, stores them, then sends them to the agents online. */
  async release(
    record: StoredAction,
    signed: SignedAction,
    body: ActionBody,
    now: number,
    targets: StoredAgent[],
  ): Promise<{ targeted: number; offline: number }> {
    const { batcher, book, registry, log } = this.core;
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
    // Stored before anything is sent: a coordinator killed right after still knows every
    // command it sent. If it cannot be stored, this rejects and nothing is kept to send later.
    await batcher.commitNow({ actions: [record], commands });
    const action = new OpenAction(record, signed, body, commands);
    book.add(action);
    let offline = 0;
    for (const c of commands) {
      if (registry.isOffline(c.agentId, now)) offline++;
      else this.dispatch(action, c);
    }
    log.info("action released", { action: body.id, name: body.name, targeted: commands.length, offline });
    return { targeted: commands.length, offline };
  }

  /**
   * Every second: times out what was acknowledged but never answered, expires
   * what no agent received in time, and (re)sends what an agent that is
   * reachable has not acknowledged: commands published while it was briefly
   * away, or left pending by a coordinator restart. Re-sending is safe: an
   * agent never runs an action id twice.
   */
  sweep(): void {
    const now = this.core.now();
    this.expireUnapproved(now);
    const { book, registry, config, outages } = this.core;
    // With its own link down the coordinator hears nothing: silence is nobody's fault.
    if (outages.isDown()) return;
    const caughtUp = this.caughtUp(now);
    for (const action of [...book.all()]) {
      // The expiry bounds when agents may receive an action, not how long they run it. A
      // command already sent may have been taken while the link was down: that time is added.
      const expired = (c: StoredCommand) =>
        now >=
        action.record.expiresAtMs +
          (c.status === CommandStatus.COMMAND_STATUS_SENT ? outages.downBetween(c.sentAtMs, now) : 0);
      const deadline = (c: StoredCommand) => {
        const due =
          c.ackedAtMs +
          action.record.timeoutMs +
          config.resultGraceMs +
          outages.downBetween(c.ackedAtMs, now);
        if (outages.lastUpAt <= c.ackedAtMs) return due;
        // The link was lost while it ran: its agent may come back after the coordinator did
        // (its result waiting in its outbox). Until it is heard again, or counts as offline,
        // nothing is due; once heard, its result has the grace to arrive.
        const back = outages.heardAgainAt(c.agentId);
        if (back === undefined) return registry.isOffline(c.agentId, now) ? due : Number.POSITIVE_INFINITY;
        return Math.max(due, back + config.resultGraceMs);
      };
      for (const command of [...action.byId.values()]) {
        if (isFinal(command.status)) continue;
        if (command.status === CommandStatus.COMMAND_STATUS_RUNNING) {
          const waiting = book.isQueued(command) && !registry.isOffline(command.agentId, now);
          if (caughtUp && !waiting && now > deadline(command)) {
            book.transition(action, command, CommandStatus.COMMAND_STATUS_TIMEOUT, {
              problem: {
                code: Codes.TIMEOUT,
                message: "the agent acknowledged the command but sent no result in time",
              },
            });
          }
        } else if (caughtUp && expired(command)) {
          book.transition(action, command, CommandStatus.COMMAND_STATUS_EXPIRED, {
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
          !registry.isOffline(command.agentId, now) &&
          (command.status === CommandStatus.COMMAND_STATUS_PENDING ||
            now - command.sentAtMs >= RESEND_AFTER_MS)
        ) {
          this.dispatch(action, command);
        }
      }
    }
  }

  /** Actions nobody approved before they expired end unapproved, never sent. */
  private expireUnapproved(now: number): void {
    const { pending, perAction, peers } = this.core;
    if (peers) {
      // Several coordinators: what waits is in the store (any of them took it), and one of them expires it.
      if (this.leading() && !this.expiring) {
        this.expiring = true;
        this.expireStoredUnapproved(now)
          .catch((err: unknown) => this.core.log.error("unapproved actions not expired", { error: err }))
          .finally(() => {
            this.expiring = false;
          });
      }
      return;
    }
    for (const record of [...pending.values()]) {
      // One being approved is left to the approval (it checks the window): the next sweep sees how it ended.
      if (now < record.expiresAtMs || perAction.busy(record.id)) continue;
      pending.delete(record.id);
      this.closeUnapproved(record, now);
    }
  }

  private closeUnapproved(record: StoredAction, now: number): void {
    record.state = ActionState.ACTION_STATE_UNAPPROVED;
    record.completedAtMs = now;
    this.core.batcher.action(record);
    this.auditUnapproved(record);
  }

  private auditUnapproved(record: StoredAction): void {
    this.core.audit.record("coordinator", "action expired unapproved", {
      actionId: record.id,
      code: Codes.EXPIRED,
      message: `nobody approved ${record.name} before it expired; it was never sent`,
    });
  }

  /** The leader's sweep when several coordinators share the store: the store's waiting actions. */
  private async expireStoredUnapproved(now: number): Promise<void> {
    const { store, pending, perAction } = this.core;
    for (const waiting of await store.pendingActions()) {
      if (now < waiting.expiresAtMs) continue;
      await perAction.run(waiting.id, async () => {
        pending.delete(waiting.id);
        const closed = { ...waiting, state: ActionState.ACTION_STATE_UNAPPROVED, completedAtMs: now };
        // Only if it still waits as read: an approval through another coordinator may have come first.
        if (!(await store.cluster?.swapPending(waiting.signed, closed, ""))) return;
        this.auditUnapproved(closed);
      });
    }
  }

  /** Actions waiting for approval, checked again: one changed in the database is closed, never offered. */
  async reloadPendingActions(): Promise<void> {
    const { store, keyring, pending, batcher } = this.core;
    for (const record of await store.pendingActions()) {
      try {
        const { body } = verifyStored(keyring, record).verified;
        if (body.target !== record.target || body.expiresAtMs !== record.expiresAtMs) {
          throw new DragnetError(Codes.ACTION_INVALID, "the stored summary does not match the signed action");
        }
        pending.set(record.id, record);
      } catch (err) {
        this.storedRefused(record.id, "not offered for approval", err);
        record.state = ActionState.ACTION_STATE_UNAPPROVED;
        record.completedAtMs = this.core.now();
        batcher.action(record);
      }
    }
  }

  /**
   * Actions released before a restart and not complete, verified again (signatures and weight)
   * before anything is sent; `only` those (this coordinator's, or those it took over from one
   * that fell silent) when several coordinators share the store.
   */
  async reloadOpenActions(only?: ReadonlySet<string>): Promise<number> {
    const { store, keyring, book, batcher } = this.core;
    let loaded = 0;
    for (const record of await store.openActions()) {
      if ((only && !only.has(record.id)) || book.get(record.id)) continue;
      let verified: ReturnType<typeof verifyStored>;
      try {
        verified = verifyStored(keyring, record);
        const { body, signers } = verified.verified;
        const short = keyring.acl.shortfall(body.operations.map(aclNameOf), signers);
        if (short) {
          throw new DragnetError(
            Codes.WEIGHT,
            `stored as released, but ${short.module} needs weight ${short.required} and its signatures carry ${short.weight}`,
          );
        }
      } catch (err) {
        // Someone changed the database: nothing of this action is sent.
        this.storedRefused(record.id, "not sent", err);
        batcher.complete(record.id, this.core.now());
        continue;
      }
      // Outside the check: a store that fails to answer fails the start, it does not close the action.
      const action = new OpenAction(
        record,
        verified.signed,
        verified.verified.body,
        await store.commandsOf(record.id),
      );
      for (const r of await store.resultsOf(record.id)) action.answered.add(r.commandId);
      book.add(action);
      loaded++;
    }
    return loaded;
  }

  private storedRefused(actionId: string, outcome: string, err: unknown): void {
    const p = problemOf(err);
    this.core.log.error(`stored action no longer verifies; ${outcome}`, { action: actionId, ...p });
    this.core.audit.record("coordinator", `stored action no longer verifies; ${outcome}`, {
      actionId,
      code: p.code,
      message: p.message,
    });
  }
}
