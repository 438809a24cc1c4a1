import { Codes, DragnetError, roleToSign, type TargetExpr, type TrustedInvestigator } from "../common/mod.js";
import {
  ActionState,
  type ApproveActionResponse,
  type Signature,
  SignedAction,
  type SubmitActionResponse,
} from "../proto/api.js";
import { type VettedAction, vetAction } from "./action-vetting.js";
import { actionRecordOf, type CoordinatorCore, checkStoredId } from "./core.js";
import type { Dispatcher } from "./dispatch.js";
import type { IncidentDesk } from "./incident-desk.js";
import type { Queries } from "./queries.js";
import type { StoredAction, StoredAgent } from "./store/store.js";

/** Several coordinators: how often an approval reads the action again when another changed it first. */
const MAX_APPROVAL_ATTEMPTS = 5;

// Submissions and approvals: a signed action is vetted (signatures, window,
// target, the weight the ACL asks), then released to the agents it targets —
// or, short of weight, held sent nowhere until co-signatures over the same
// bytes carry it. Each step is audited and, for an incident's action,
// written in its notebook.

export class Submissions {
  constructor(
    private readonly core: CoordinatorCore,
    private readonly parts: { dispatcher: Dispatcher; queries: Queries; incidents: IncidentDesk },
  ) {}

  /**
   * Accepts a signed action. If its signatures carry the weight every
   * operation's module needs (the coordinator's copy of the ACL), it is sent
   * at once; otherwise it waits, sent nowhere, for co-signatures (approve).
   */
  async submit(
    signed: SignedAction | undefined,
    actor = "unknown",
    caller?: TrustedInvestigator,
  ): Promise<SubmitActionResponse> {
    const now = this.core.now();
    const { verified, body, modules, aclNames, expr, shortfall } = vetAction(signed, this.core.keyring, now);
    if (body.schedule) {
      throw new DragnetError(
        Codes.ACTION_INVALID,
        "this is a signed schedule, not an action: create it with dragnet schedule create (CreateSchedule)",
      );
    }
    // Who submits must hold the role each operation needs (respond for a response module).
    for (const m of new Set(aclNames)) {
      const role = roleToSign(m);
      if (caller && !caller.roles.has(role)) {
        throw new DragnetError(
          Codes.FORBIDDEN,
          `${caller.name} may not submit ${m}: it needs the ${role} role`,
        );
      }
    }
    // The same action submitted twice at once: the second sees the first stored.
    return this.core.perAction.run(body.id, () =>
      this.accept(signed!, { verified, body, modules, expr, shortfall }, now, actor),
    );
  }

  /** A vetted action: refused if it was submitted before, else held for approval or released. */
  private async accept(
    signed: SignedAction,
    { verified, body, modules, expr, shortfall }: Omit<VettedAction, "aclNames">,
    now: number,
    actor: string,
  ): Promise<SubmitActionResponse> {
    const { batcher, book, pending, store, audit } = this.core;
    await batcher.flush();
    if (book.get(body.id) || pending.has(body.id) || (await store.getAction(body.id))) {
      throw new DragnetError(Codes.ACTION_INVALID, `action ${body.id} was already submitted`);
    }
    if (body.incidentId && !(await store.getIncident(body.incidentId))) {
      throw new DragnetError(
        Codes.NOT_FOUND,
        `no incident ${body.incidentId.slice(0, 40)}: open one with dragnet incident open (actions name an incident by its full id)`,
      );
    }
    const targets = await this.targetsOf(expr, body.target, now);
    const record = actionRecordOf(body, {
      signed: SignedAction.encode(signed).finish(),
      signerKeyIds: verified.signers.map((s) => s.keyId),
      signerNames: verified.signers.map((s) => s.name),
      modules,
      submittedAtMs: now,
      state: ActionState.ACTION_STATE_RELEASED,
      weight: shortfall?.weight ?? verified.weight,
      requiredWeight: shortfall?.required ?? 0,
    });
    const signers = verified.signers.map((s) => s.name).join(", ");
    // Stored before it is reported accepted: a submit that fails (a full disk) leaves
    // nothing behind to be committed or sent later.
    if (shortfall) {
      record.state = ActionState.ACTION_STATE_PENDING_APPROVAL;
      await batcher.commitNow({ actions: [record] });
      pending.set(record.id, record);
      await this.parts.incidents.actionSubmitted(body, record.signerNames, true, actor);
      audit.record(actor, "action held for approval", {
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
    const { targeted, offline } = await this.parts.dispatcher.release(record, signed, body, now, targets);
    await this.parts.incidents.actionSubmitted(body, record.signerNames, false, actor);
    audit.record(actor, "action submitted", {
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

  /**
   * Adds a co-signature over the same bytes to an action waiting for approval
   * and releases it once every operation has the weight it needs. A key that
   * already signed is refused: the same investigator counts once. Given the
   * caller's key id, the signature must be the caller's own.
   */
  async approve(
    idOrPrefix: string,
    signature: Signature | undefined,
    actor = "unknown",
    actorKeyId?: string,
  ): Promise<ApproveActionResponse> {
    const id = await this.parts.queries.resolveActionId(idOrPrefix);
    // Approvals of one action one at a time: each adds its signature to what the one before stored.
    return this.core.perAction.run(id, () => this.cosign(id, signature, actor, actorKeyId));
  }

  private async cosign(
    id: string,
    signature: Signature | undefined,
    actor: string,
    actorKeyId: string | undefined,
    attempt = 1,
  ): Promise<ApproveActionResponse> {
    const { book, pending, store, keyring, batcher, audit, config } = this.core;
    const now = this.core.now();
    let record = pending.get(id);
    if (this.core.peers) {
      // Several coordinators: the store says whether it still waits (another may have approved or expired it).
      const stored = await store.getAction(id);
      const waiting =
        stored?.state === ActionState.ACTION_STATE_PENDING_APPROVAL && stored.completedAtMs === undefined;
      record = waiting ? stored : undefined;
      if (record) pending.set(id, record);
      else pending.delete(id);
    }
    if (!record) {
      const released =
        book.get(id) || (await store.getAction(id))?.state === ActionState.ACTION_STATE_RELEASED;
      throw new DragnetError(
        Codes.APPROVAL,
        released
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
    const signer = keyring.get(signature.keyId);
    if (current.signatures.some((s) => s.keyId === signature.keyId)) {
      throw new DragnetError(
        Codes.APPROVAL,
        `${signer?.name ?? signature.keyId} already signed action ${id}; the same investigator counts once — another one must approve`,
      );
    }
    const signed: SignedAction = { body: current.body, signatures: [...current.signatures, signature] };
    const { verified, body, expr, shortfall } = vetAction(signed, keyring, now);
    checkStoredId(id, body.id);
    // Everything that can refuse comes before the record changes: a refused approval leaves no trace but the audit.
    const targets = shortfall ? [] : await this.targetsOf(expr, body.target, now);
    // A copy: the held record changes only once the approval is stored.
    const next: StoredAction = {
      ...record,
      signed: SignedAction.encode(signed).finish(),
      signerKeyIds: verified.signers.map((s) => s.keyId),
      signerNames: verified.signers.map((s) => s.name),
      weight: shortfall?.weight ?? verified.weight,
      requiredWeight: shortfall?.required ?? record.requiredWeight,
    };
    const by = signer?.name ?? signature.keyId;
    // Several coordinators: the approval counts only if the action still waits with the signatures
    // read above (another approval or the leader's expiry may have come first, through another);
    // a release is claimed in the same step, so two approvals never release one action twice.
    if (store.cluster) {
      const claimed = shortfall ? next : { ...next, state: ActionState.ACTION_STATE_RELEASED };
      if (!(await store.cluster.swapPending(record.signed, claimed, shortfall ? "" : config.id))) {
        if (attempt >= MAX_APPROVAL_ATTEMPTS)
          throw new DragnetError(
            Codes.APPROVAL,
            `action ${id} kept changing while it was approved: try again`,
          );
        return this.cosign(id, signature, actor, actorKeyId, attempt + 1);
      }
    }
    if (shortfall) {
      if (!store.cluster) await batcher.commitNow({ actions: [next] });
      pending.set(id, next);
      await this.parts.incidents.actionApproved(next, by, false, actor);
      audit.record(actor, "action co-signed", {
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
    const { targeted, offline } = await this.parts.dispatcher.release(next, signed, body, now, targets);
    pending.delete(id);
    await this.parts.incidents.actionApproved(next, by, true, actor);
    audit.record(actor, "action approved and released", {
      actionId: id,
      message: `approved by ${by}; signers ${next.signerNames.join(", ")}; ${targeted} agents (${offline} offline)`,
    });
    return {
      actionId: id,
      released: true,
      weight: verified.weight,
      requiredWeight: next.requiredWeight,
      targeted,
      offline,
    };
  }

  /** The agents a target selects now; refuses one that selects nobody. */
  private async targetsOf(expr: TargetExpr, text: string, now: number): Promise<StoredAgent[]> {
    const targets = await this.parts.queries.select(expr, now);
    if (targets.length === 0)
      throw new DragnetError(Codes.NO_TARGET, `the target "${text}" selects no agent now`);
    return targets;
  }
}
