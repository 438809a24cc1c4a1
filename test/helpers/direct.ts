import type { NatsConnection } from "@nats-io/transport-node";
import { DragnetError, newId } from "../../common/mod.js";
import { CommandAck, CommandEnvelope, CommandResult, type SignedAction } from "../../proto/api.js";
import { eventually } from "./fleet.js";

// Talking to an agent past the coordinator, as a compromised coordinator (or
// anyone with its NATS credentials) would: publish on the agent's command
// subject and listen to what it answers.

/**
 * Publishes a command straight to an agent and returns its acks and any result within `waitMs` of
 * the first of them (a command the agent answers at once is acknowledged by its result alone).
 */
export async function sendDirect(nc: NatsConnection, agentId: string, payload: Uint8Array, waitMs = 700) {
  const acks: CommandAck[] = [];
  const results: CommandResult[] = [];
  const ackSub = nc.subscribe(`dragnet.ack.${agentId}.*`, {
    callback: (_e, m) => {
      acks.push(CommandAck.decode(m.data));
    },
  });
  const resSub = nc.subscribe(`dragnet.res.${agentId}.*.*`, {
    callback: (_e, m) => {
      results.push(CommandResult.decode(m.data));
    },
  });
  await nc.flush();
  nc.publish(`dragnet.cmd.${agentId}`, payload);
  await eventually(() => (acks.length > 0 || results.length > 0 ? true : undefined), 5000);
  await new Promise((r) => setTimeout(r, waitMs));
  ackSub.unsubscribe();
  resSub.unsubscribe();
  return { ack: acks[0], acks, results };
}

export function envelope(action: SignedAction, commandId = newId()): Uint8Array {
  return CommandEnvelope.encode({
    commandId,
    action,
    sentAtMs: Date.now(),
    coordinator: "main",
    run: 0,
    stop: undefined,
  }).finish();
}

/** The DragnetError a promise rejects with (fails if it resolves or rejects otherwise). */
export async function refusal(p: Promise<unknown>): Promise<DragnetError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof DragnetError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}
