import {
  aclNameOf,
  Codes,
  DragnetError,
  isId,
  type Keyring,
  parseTarget,
  roleToSign,
  type TargetExpr,
  type VerifiedAction,
  verifySignedAction,
  type WeightCheck,
} from "../common/mod.js";
import type { ActionBody, SignedAction } from "../proto/api.js";

// The checks every submission and approval passes in the coordinator:
// signatures against its keyring, a well-formed body, a sane validity window,
// a target that parses, and how far the signatures are from the weight the
// ACL asks. Agents check all of this again on their own.

/** Refuse actions that stay valid longer than this (agents refuse them too). */
export const MAX_VALIDITY_MS = 30 * 86_400_000;
/** An action may start this far in the future (clock differences). */
const MAX_FUTURE_START_MS = 60_000;

export interface VettedAction {
  verified: VerifiedAction;
  body: ActionBody;
  modules: string[];
  /** What each operation is weighed as in the ACL (aclNameOf). */
  aclNames: string[];
  expr: TargetExpr;
  /** What the weakest operation still needs, if the signatures are not enough yet. */
  shortfall: WeightCheck | undefined;
}

export function vetAction(signed: SignedAction | undefined, keyring: Keyring, now: number): VettedAction {
  const verified = verifySignedAction(signed, keyring);
  const body = verified.body;
  if (!isId(body.id)) {
    throw new DragnetError(Codes.ACTION_INVALID, `action id "${body.id.slice(0, 40)}" is not a Dragnet id`);
  }
  if (body.operations.length === 0)
    throw new DragnetError(Codes.ACTION_INVALID, "the action has no operation");
  const modules = body.operations.map((op, i) => {
    if (!op.module) {
      throw new DragnetError(
        Codes.UNKNOWN_MODULE,
        `operation ${i + 1} names no module the coordinator knows`,
      );
    }
    return op.module.$case;
  });
  if (body.expiresAtMs <= now) {
    throw new DragnetError(
      Codes.EXPIRED,
      `the action expired at ${new Date(body.expiresAtMs).toISOString()}`,
    );
  }
  if (body.validFromMs > now + MAX_FUTURE_START_MS) {
    throw new DragnetError(
      Codes.NOT_YET_VALID,
      `the action is not valid before ${new Date(body.validFromMs).toISOString()}`,
    );
  }
  if (body.expiresAtMs <= body.validFromMs || body.expiresAtMs - body.validFromMs > MAX_VALIDITY_MS) {
    throw new DragnetError(Codes.ACTION_INVALID, "the validity window must be positive and at most 30 days");
  }
  const expr = parseTarget(body.target);
  // Weighed per operation: a read-only use of a response module (quarantine list) is an investigation.
  const aclNames = body.operations.map(aclNameOf);
  const shortfall = keyring.acl.shortfall(aclNames, verified.signers);
  if (shortfall) {
    // Waiting for approvals that can never add up helps nobody: say so now.
    // Every investigator of the keyring, those who may submit it first (the others may only co-sign).
    const role = roleToSign(shortfall.module);
    const everyone = keyring.entries().sort((a, b) => Number(b.roles.has(role)) - Number(a.roles.has(role)));
    const reachable = keyring.acl.weigh(shortfall.module, everyone);
    if (reachable.weight < shortfall.required) {
      throw new DragnetError(
        Codes.WEIGHT,
        `${shortfall.module} needs signatures of weight ${shortfall.required}, and every investigator allowed to sign it together carries ${reachable.weight}`,
      );
    }
  }
  return { verified, body, modules, aclNames, expr, shortfall };
}
