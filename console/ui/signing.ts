import { randomBytes } from "node:crypto";
import { sha256Hex } from "../../common/journal.js";
import {
  aclNameOf,
  Codes,
  DragnetError,
  formatDuration,
  type Keyring,
  signAction,
  signBytes,
} from "../../common/mod.js";
import { type ActionBody, type AgentInfo, Operation } from "../../proto/api.js";
import type { CoordinatorApi } from "../client.js";
import { statusName } from "../commands/agents.js";
import { reviewForApproval } from "../commands/approve.js";
import type { GlobalOptions } from "../home.js";
import { printable } from "../output/rows.js";
import { actionFromForm, type FormRequest } from "./forms.js";
import type { Shown } from "./wire.js";

// Signing from the page, always in two steps. First the server makes the
// action (from a form) or fetches it (to approve) and shows it in plain words:
// what runs, where (the agents the target names now), until when, for which
// incident, and whether a second investigator must approve. Only a second
// request, naming what was shown, signs it — with the key of the console
// running `dragnet ui`, which never leaves this process.

/** A preview older than this is not signed: what it showed (agents, times) may have changed. */
const PREVIEW_TTL_MS = 5 * 60_000;
const MAX_PREVIEWS = 50;
/** Hosts listed by name in a preview; the rest are counted. */
const HOSTS_SHOWN = 25;

function shownOf(body: ActionBody, targets: AgentInfo[], approval: string): Shown {
  return {
    id: body.id,
    name: printable(body.name),
    target: printable(body.target),
    operations: body.operations.map((op) => ({
      module: op.module?.$case ?? "(unknown)",
      parameters: printable(
        JSON.stringify((Operation.toJSON(op) as Record<string, unknown>)[op.module?.$case ?? ""] ?? {}),
      ),
    })),
    description: printable(body.description),
    incidentId: printable(body.incidentId),
    validFrom: new Date(body.validFromMs).toISOString(),
    expires: new Date(body.expiresAtMs).toISOString(),
    expiresIn: formatDuration(Math.max(0, body.expiresAtMs - Date.now())),
    timeout: formatDuration(body.timeoutMs),
    agents: {
      count: targets.length,
      offline: targets.filter((a) => statusName(a.status) === "offline").length,
      hosts: targets
        .slice(0, HOSTS_SHOWN)
        .map((a) => ({ hostname: a.hostname, status: statusName(a.status) })),
    },
    approval,
  };
}

export class Signer {
  private readonly previews = new Map<string, { body: ActionBody; madeAt: number }>();

  constructor(
    private readonly api: CoordinatorApi,
    private readonly globals: GlobalOptions,
    private readonly keyring: () => Keyring,
  ) {}

  /** Step one of a new action: the action a form makes, shown; nothing is signed. */
  async preview(request: FormRequest): Promise<{ preview: string; commandLine: string; action: Shown }> {
    const { body, commandLine } = await actionFromForm(this.api, this.globals, request);
    const targets = await this.api.previewTarget(body.target);
    const keyring = this.keyring();
    const me = keyring.get(this.api.key.keyId);
    const short = keyring.acl.shortfall(body.operations.map(aclNameOf), me ? [me] : []);
    const approval = !me
      ? `your key (${this.api.key.name}, ${this.api.key.keyId}) is not in this console's keyring: agents that share it will refuse the action`
      : short
        ? `${short.module} needs signatures of weight ${short.required}; yours carries ${short.weight}: after you sign it waits for a second investigator, and nothing runs until then`
        : "";
    const now = Date.now();
    for (const [id, p] of this.previews) if (now - p.madeAt > PREVIEW_TTL_MS) this.previews.delete(id);
    if (this.previews.size >= MAX_PREVIEWS) this.previews.delete(this.previews.keys().next().value!);
    const preview = randomBytes(16).toString("hex");
    this.previews.set(preview, { body, madeAt: now });
    return { preview, commandLine, action: shownOf(body, targets, approval) };
  }

  /** Step two: signs and submits exactly the action a preview showed (once). */
  async sign(preview: string) {
    const held = this.previews.get(preview);
    this.previews.delete(preview);
    if (!held)
      throw new DragnetError(
        Codes.PARAMS,
        "nothing to sign under that preview: it was signed already or replaced",
      );
    if (Date.now() - held.madeAt > PREVIEW_TTL_MS)
      throw new DragnetError(Codes.PARAMS, "the preview is over 5 minutes old: preview the action again");
    const res = await this.api.submitAction(signAction(held.body, this.api.key));
    return {
      actionId: res.actionId,
      pendingApproval: res.pendingApproval,
      targeted: res.targeted,
      offline: res.offline,
      weight: res.weight,
      requiredWeight: res.requiredWeight,
    };
  }

  /** Step one of an approval: the action as signed (not as the coordinator describes it), its checked signers. */
  async review(id: string) {
    const r = await reviewForApproval(this.api, this.keyring(), id);
    const approval = r.before
      ? `signed with weight ${r.before.weight} of the ${r.before.required} that ${r.before.module} needs (by your keyring)`
      : "by your keyring, its signatures already carry the weight every operation needs";
    return {
      action: shownOf(r.body, r.targets, approval),
      signers: r.verified.signers.map((s) => ({ name: s.name, keyId: s.keyId })),
      you: this.api.key.name,
      // What the approval will sign: the page sends it back, and nothing else is signed.
      bodySha256: sha256Hex(r.bodyBytes),
    };
  }

  /** Step two: co-signs the body the review showed, if it is still that body. */
  async approve(id: string, bodySha256: string) {
    const r = await reviewForApproval(this.api, this.keyring(), id);
    if (sha256Hex(r.bodyBytes) !== bodySha256)
      throw new DragnetError(Codes.APPROVAL, "the action is not the one you reviewed: review it again");
    const res = await this.api.approveAction(r.summary.id, signBytes(r.bodyBytes, this.api.key));
    return {
      actionId: res.actionId,
      released: res.released,
      weight: res.weight,
      requiredWeight: res.requiredWeight,
      targeted: res.targeted,
      offline: res.offline,
    };
  }
}
