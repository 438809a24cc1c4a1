// One catalogue of refusal and failure codes. Codes are stable: tests, scripts
// and the console branch on them, never on message text.

export const Codes = {
  /** The action carries no signature. */
  UNSIGNED: "DRAGNET_E_UNSIGNED",
  /** A signature's key id is not in the verifier's keyring. */
  SIG_UNKNOWN_KEY: "DRAGNET_E_SIG_UNKNOWN_KEY",
  /** A signature does not match the signed bytes. */
  SIG_INVALID: "DRAGNET_E_SIG_INVALID",
  /** The action's validity window has not started. */
  NOT_YET_VALID: "DRAGNET_E_NOT_YET_VALID",
  /** The action's validity window is over. */
  EXPIRED: "DRAGNET_E_EXPIRED",
  /** This agent already ran this signed action id. */
  REPLAY: "DRAGNET_E_REPLAY",
  /** A schedule's run refused: an investigator stopped the schedule, or the run is not one the schedule signed. */
  SCHEDULE: "DRAGNET_E_SCHEDULE",
  /** The signatures do not carry the weight the module's ACL rule requires. */
  WEIGHT: "DRAGNET_E_WEIGHT",
  /** None of the signers is allowed to run this module. */
  NOT_ALLOWED: "DRAGNET_E_NOT_ALLOWED",
  /** The signed target expression does not select this agent. */
  TARGET_MISMATCH: "DRAGNET_E_TARGET_MISMATCH",
  /** An API call without valid investigator credentials. */
  UNAUTHENTICATED: "DRAGNET_E_UNAUTHENTICATED",
  /** The action waits for more signatures (two-person rule) or is not in that state. */
  APPROVAL: "DRAGNET_E_APPROVAL",
  /** An operation names a module the agent does not have. */
  UNKNOWN_MODULE: "DRAGNET_E_UNKNOWN_MODULE",
  /** Module parameters fail the module's check. */
  PARAMS: "DRAGNET_E_PARAMS",
  /** A payload is not a valid protobuf message of the expected type. */
  DECODE: "DRAGNET_E_DECODE",
  /** A payload is over the size limit. */
  TOO_LARGE: "DRAGNET_E_TOO_LARGE",
  /** A target expression does not parse. */
  TARGET_PARSE: "DRAGNET_E_TARGET_PARSE",
  /** The action is malformed (missing id, empty operations, bad window...). */
  ACTION_INVALID: "DRAGNET_E_ACTION_INVALID",
  /** The target selects no agent. */
  NO_TARGET: "DRAGNET_E_NO_TARGET",
  /** Operations did not finish within the action's timeout. */
  TIMEOUT: "DRAGNET_E_TIMEOUT",
  /** A module failed while running. */
  MODULE_FAILED: "DRAGNET_E_MODULE_FAILED",
  /** A named thing (action, agent) does not exist. */
  NOT_FOUND: "DRAGNET_E_NOT_FOUND",
  /** An id prefix matches more than one thing. */
  AMBIGUOUS: "DRAGNET_E_AMBIGUOUS",
  /** A configuration or key file is missing or malformed. */
  CONFIG: "DRAGNET_E_CONFIG",
  /** A message arrived on a subject that does not belong to its sender. */
  SUBJECT_MISMATCH: "DRAGNET_E_SUBJECT_MISMATCH",
  /** A message on an agent's subject carries no agent signature (the NATS server's own replies, say). */
  AGENT_UNSIGNED: "DRAGNET_E_AGENT_UNSIGNED",
  /** A message on an agent's subject is signed, but not by that agent's own NATS credentials. */
  AGENT_SIGNATURE: "DRAGNET_E_AGENT_SIGNATURE",
  /** The caller's role does not allow this (keyring roles). */
  FORBIDDEN: "DRAGNET_E_FORBIDDEN",
  /** The command ended because the agent stopped or lost it. */
  AGENT_LOST: "DRAGNET_E_AGENT_LOST",
  /** The coordinator (or NATS) cannot be reached. */
  UNAVAILABLE: "DRAGNET_E_UNAVAILABLE",
  /** Another coordinator sharing the store dispatches the action this concerns. */
  ELSEWHERE: "DRAGNET_E_ELSEWHERE",
  INTERNAL: "DRAGNET_E_INTERNAL",
} as const;

export type Code = (typeof Codes)[keyof typeof Codes];

export class DragnetError extends Error {
  override name = "DragnetError";
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  static is(err: unknown, code?: Code): err is DragnetError {
    return err instanceof DragnetError && (code === undefined || err.code === code);
  }

  /** The wire form (dragnet.v1.Problem). */
  toProblem(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** A Problem for any thrown value: DragnetErrors keep their code, others become INTERNAL. */
export function problemOf(err: unknown, fallback: Code = Codes.INTERNAL): { code: string; message: string } {
  if (err instanceof DragnetError) return err.toProblem();
  const message = err instanceof Error ? err.message : String(err);
  return { code: fallback, message };
}

/**
 * One line for people: the message and, for Dragnet refusals, the code.
 * Stacks are for developers: set DRAGNET_DEBUG=1 to see them.
 */
export function describeError(err: unknown): string {
  if (process.env.DRAGNET_DEBUG && err instanceof Error && err.stack) return err.stack;
  if (err instanceof DragnetError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}
