import { sign, verify } from "node:crypto";
import { ActionBody, type Signature, type SignedAction } from "../proto/mod.js";
import { Codes, DragnetError } from "./errors.js";
import type { Keyring } from "./keyring.js";
import type { InvestigatorKey, TrustedInvestigator } from "./keys.js";

// Signatures cover the exact encoded ActionBody bytes, prefixed by a context
// string so that a signature made for an action can never be replayed as a
// signature over any other kind of Dragnet message.
export const ACTION_SIGNING_CONTEXT = Buffer.from("dragnet-action-v1\n");
/**
 * A schedule (a body with a ScheduleSpec) is signed in a context of its own:
 * an agent from before schedules, which would ignore the spec and run the
 * body once as an action, finds the signature invalid instead.
 */
export const SCHEDULE_SIGNING_CONTEXT = Buffer.from("dragnet-schedule-v1\n");

/** Upper bound on an encoded action body; NATS payloads are 1 MB at most. */
export const MAX_ACTION_BODY_BYTES = 256 * 1024;
/** More co-signers than any ACL needs. */
export const MAX_SIGNATURES = 16;

function signedMessage(body: Uint8Array, schedule = false): Buffer {
  return Buffer.concat([schedule ? SCHEDULE_SIGNING_CONTEXT : ACTION_SIGNING_CONTEXT, body]);
}

/** Signs an action's encoded body (an approval's co-signature). */
export function signBytes(body: Uint8Array, key: InvestigatorKey, schedule = false): Signature {
  return { keyId: key.keyId, signature: sign(null, signedMessage(body, schedule), key.privateKey) };
}

/** Encodes the body once and signs those bytes (in the schedule context for a schedule). */
export function signAction(body: ActionBody, key: InvestigatorKey): SignedAction {
  const bytes = Buffer.from(ActionBody.encode(body).finish());
  return { body: bytes, signatures: [signBytes(bytes, key, body.schedule !== undefined)] };
}

/** Adds a co-signature over the same bytes (a key that already signed is not added twice). */
export function coSign(action: SignedAction, key: InvestigatorKey): SignedAction {
  if (action.signatures.some((s) => s.keyId === key.keyId)) return action;
  return { body: action.body, signatures: [...action.signatures, signBytes(action.body, key)] };
}

export interface VerifiedAction {
  body: ActionBody;
  /** Distinct investigators whose signatures are valid, in signing order. */
  signers: TrustedInvestigator[];
  /** Sum of the signers' weights; a key that signed twice counts once. */
  weight: number;
  /** Names of investigators whose key signed more than once (counted once). */
  repeated: string[];
  /** A schedule's run: the signed schedule `body` was derived from (common/schedule.ts). */
  schedule?: ActionBody;
}

/**
 * Checks every signature against the keyring and decodes the body. Any
 * signature that is unknown or does not verify refuses the whole action: a
 * tampered or foreign signature is a reason to distrust the rest.
 */
export function verifySignedAction(action: SignedAction | undefined, keyring: Keyring): VerifiedAction {
  if (!action || action.body.length === 0) {
    throw new DragnetError(Codes.ACTION_INVALID, "the command carries no action body");
  }
  if (action.body.length > MAX_ACTION_BODY_BYTES) {
    throw new DragnetError(
      Codes.TOO_LARGE,
      `the action body has ${action.body.length} bytes; the limit is ${MAX_ACTION_BODY_BYTES}`,
    );
  }
  if (action.signatures.length === 0) {
    throw new DragnetError(Codes.UNSIGNED, "the action is not signed");
  }
  if (action.signatures.length > MAX_SIGNATURES) {
    // Each costs a verification: thousands of copies of one signature must not buy CPU time.
    throw new DragnetError(
      Codes.TOO_LARGE,
      `the action carries ${action.signatures.length} signatures; at most ${MAX_SIGNATURES} are accepted`,
    );
  }
  let body: ActionBody | undefined;
  let decodeError: Error | undefined;
  try {
    body = ActionBody.decode(action.body);
  } catch (err) {
    decodeError = err as Error;
  }
  // The context follows what the bytes say they are: a schedule verifies only as a schedule.
  // Bytes that do not decode are checked as an action's (their signature says whether they were altered).
  const message = signedMessage(action.body, body?.schedule !== undefined);
  const signers: TrustedInvestigator[] = [];
  const repeated: string[] = [];
  for (const sig of action.signatures) {
    const trusted = keyring.get(sig.keyId);
    if (!trusted) {
      throw new DragnetError(
        Codes.SIG_UNKNOWN_KEY,
        `signed by unknown key ${JSON.stringify(sig.keyId.slice(0, 32))}: it is not in this keyring`,
      );
    }
    if (signers.some((s) => s.keyId === trusted.keyId)) {
      // Counted once whatever it says: no need to verify it again.
      if (!repeated.includes(trusted.name)) repeated.push(trusted.name);
      continue;
    }
    const ok = sig.signature.length === 64 && verify(null, message, trusted.publicKey, sig.signature);
    if (!ok) {
      throw new DragnetError(
        Codes.SIG_INVALID,
        `the signature of ${trusted.name} (${trusted.keyId}) does not match the action's bytes`,
      );
    }
    signers.push(trusted);
  }
  if (!body) {
    throw new DragnetError(Codes.DECODE, `the signed action body does not decode: ${decodeError?.message}`);
  }
  return { body, signers, weight: signers.reduce((sum, s) => sum + s.weight, 0), repeated };
}

/** Refuses an action outside its validity window (with `skewMs` of tolerance for clocks). */
export function checkValidityWindow(body: ActionBody, now: number, skewMs = 0): void {
  if (body.expiresAtMs <= body.validFromMs) {
    throw new DragnetError(Codes.ACTION_INVALID, "the action expires before it becomes valid");
  }
  if (now + skewMs < body.validFromMs) {
    throw new DragnetError(
      Codes.NOT_YET_VALID,
      `the action is not valid before ${new Date(body.validFromMs).toISOString()} (now ${new Date(now).toISOString()})`,
    );
  }
  if (now - skewMs >= body.expiresAtMs) {
    throw new DragnetError(
      Codes.EXPIRED,
      `the action expired at ${new Date(body.expiresAtMs).toISOString()} (now ${new Date(now).toISOString()})`,
    );
  }
}
