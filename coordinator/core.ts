import type { NatsConnection } from "@nats-io/transport-node";
import type { AgentVerifier } from "../common/agent-identity.js";
import {
  Codes,
  DragnetError,
  type Keyring,
  type Logger,
  type Subjects,
  type VerifiedAction,
  verifySignedAction,
} from "../common/mod.js";
import { runBody } from "../common/schedule.js";
import { type ActionBody, SignedAction } from "../proto/api.js";
import type { ActionBook } from "./action-book.js";
import type { AuditLog } from "./audit-log.js";
import type { CoordinatorConfig } from "./config.js";
import type { KeyedQueue } from "./keyed-queue.js";
import type { LinkOutages } from "./link-outages.js";
import type { PeerRelay } from "./peer-relay.js";
import type { AgentRegistry } from "./registry.js";
import type { Store, StoredAction } from "./store/store.js";
import type { WriteBatcher } from "./write-batcher.js";

// What the coordinator's parts share (intake of what agents send, dispatch of
// commands, submissions and approvals, queries): its configuration, the state
// it keeps in memory, and its store. coordinator.ts makes one and hands it to
// each part.

export interface CoordinatorCore {
  readonly config: CoordinatorConfig;
  readonly log: Logger;
  readonly now: () => number;
  readonly subjects: Subjects;
  readonly keyring: Keyring;
  readonly store: Store;
  readonly batcher: WriteBatcher;
  readonly registry: AgentRegistry;
  /** The actions in flight and their commands. */
  readonly book: ActionBook;
  readonly audit: AuditLog;
  /** Actions waiting for co-signatures (not in the book: they have no commands yet). */
  readonly pending: Map<string, StoredAction>;
  /** Checks that what arrives on an agent's subject was signed by that agent. */
  readonly agents: AgentVerifier;
  /** The NATS connection while there is one. */
  nats(): NatsConnection | undefined;
  /** When that connection was down (deadlines do not run meanwhile). */
  readonly outages: LinkOutages;
  /**
   * Work on one action or schedule id at a time (a submission, an approval, a
   * creation): each reads the store, decides, then writes, and a second one
   * for the same id waits to see what the first did.
   */
  readonly perAction: KeyedQueue;
  /** With several coordinators on one store: how they tell each other of the actions they dispatch. */
  readonly peers?: PeerRelay;
}

/** Anything with NATS headers (core messages, JetStream messages). */
export interface WithHeaders {
  subject: string;
  data: Uint8Array;
  headers?: { get(name: string): string };
}

/**
 * The agent a message comes from: the one its subject names, checked against
 * the agent's own signature. Throws SUBJECT_MISMATCH, AGENT_UNSIGNED or
 * AGENT_SIGNATURE.
 */
export function authenticAgent(core: CoordinatorCore, msg: WithHeaders, sentAtMs?: number): string {
  const agentId = core.subjects.agentOf(msg.subject);
  if (!agentId) throw new DragnetError(Codes.SUBJECT_MISMATCH, `bad subject ${msg.subject.slice(0, 200)}`);
  core.agents.check(agentId, msg.subject, msg.data, msg.headers, sentAtMs);
  return agentId;
}

/** authenticAgent(), with the signature verified off the event loop (the messages every agent sends). */
export async function authenticAgentAsync(
  core: CoordinatorCore,
  msg: WithHeaders,
  sentAtMs?: number,
): Promise<string> {
  const agentId = core.subjects.agentOf(msg.subject);
  if (!agentId) throw new DragnetError(Codes.SUBJECT_MISMATCH, `bad subject ${msg.subject.slice(0, 200)}`);
  await core.agents.checkAsync(agentId, msg.subject, msg.data, msg.headers, sentAtMs);
  return agentId;
}

/** When the stream stored a message: the sender's credentials were good then (the server checks them). */
export function storedAtMs(m: { info: { timestampNanos: number } }): number {
  return Math.floor(m.info.timestampNanos / 1e6);
}

/** Refuses a stored row that holds another action than the one it names (only a database edit does that). */
export function checkStoredId(rowId: string, bodyId: string): void {
  if (bodyId !== rowId) {
    throw new DragnetError(Codes.ACTION_INVALID, `the stored row ${rowId} holds the signed action ${bodyId}`);
  }
}

/**
 * A stored action's signatures checked again, and the row checked to hold the
 * action it names; for a schedule's run, the run derived again from the signed
 * schedule.
 */
export function verifyStored(
  keyring: Keyring,
  record: StoredAction,
): { signed: SignedAction; verified: VerifiedAction } {
  const signed = SignedAction.decode(record.signed);
  const verified = verifySignedAction(signed, keyring);
  if (record.scheduleId) {
    checkStoredId(record.scheduleId, verified.body.id);
    const body = runBody(verified.body, record.run ?? 0);
    checkStoredId(record.id, body.id);
    return { signed, verified: { ...verified, body, schedule: verified.body } };
  }
  checkStoredId(record.id, verified.body.id);
  return { signed, verified };
}

/** What a stored action takes from its (signed or derived) body; the rest is how it was signed and released. */
export function actionRecordOf(
  body: ActionBody,
  rest: Omit<
    StoredAction,
    "id" | "name" | "target" | "incidentId" | "createdAtMs" | "validFromMs" | "expiresAtMs" | "timeoutMs"
  >,
): StoredAction {
  return {
    id: body.id,
    name: body.name,
    target: body.target,
    incidentId: body.incidentId,
    createdAtMs: body.createdAtMs,
    validFromMs: body.validFromMs,
    expiresAtMs: body.expiresAtMs,
    timeoutMs: body.timeoutMs || 60_000,
    ...rest,
  };
}
