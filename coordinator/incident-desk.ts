import type { Page } from "../common/journal.js";
import { Codes, DragnetError, type Logger, rulesSha256 } from "../common/mod.js";
import {
  ActionBody,
  type ActionSummary,
  Alert,
  type CommandResult,
  CommandStatus,
  EvidenceItem,
  type Incident,
  IsolateResult,
  type Operation,
  SignedAction,
} from "../proto/api.js";
import type { OpenAction } from "./action-book.js";
import type { AuditFields } from "./audit-log.js";
import { isFinal } from "./command-status.js";
import type { EvidenceDesk } from "./evidence-desk.js";
import type { Notebook } from "./notebook.js";
import type { Notifier } from "./notifier.js";
import { type ReportInput, renderHtml, renderMarkdown } from "./report.js";
import type { Store, StoredAction, StoredIncident } from "./store/store.js";

// Where the coordinator meets the incident notebook: the pages written for
// what happens with an incident's id (actions submitted, approved, completed;
// isolation; evidence; alerts), custody, notification, and the report. The
// coordinator calls these at those moments; the notebook keeps the pages.

export interface IncidentDeskDeps {
  notebook: Notebook;
  notifier: Notifier;
  evidence: EvidenceDesk;
  store: Store;
  /** An action still open (its record carries the incident). */
  openAction(id: string): OpenAction | undefined;
  hostname(agentId: string): string;
  actionSummary(id: string): Promise<ActionSummary>;
  /** Records what an agent's message tried and was refused (rate-limited audit). */
  untrusted(actor: string, event: string, fields: AuditFields): void;
  log: Logger;
  now: () => number;
}

/**
 * An operation as the notebook records it: its module and parameters — for
 * yara, the rules by name, size and SHA-256 (their text is in the signed
 * action; a notebook page stays readable).
 */
function notedOperation(op: Operation): unknown {
  if (op.module?.$case !== "yara") return op.module;
  const { rules, ...rest } = op.module.value;
  return {
    $case: "yara",
    value: {
      ...rest,
      rules: rules.map((r) => ({ name: r.name, bytes: Buffer.byteLength(r.text), sha256: rulesSha256([r]) })),
      rulesSha256: rulesSha256(rules),
    },
  };
}

export class IncidentDesk {
  readonly notebook: Notebook;

  constructor(private readonly deps: IncidentDeskDeps) {
    this.notebook = deps.notebook;
  }

  /** Each of these writes its page and never rejects: what happened stands whether its page could be written or not. */
  actionSubmitted(body: ActionBody, signers: string[], held: boolean, actor: string): Promise<void> {
    return this.notebook.recordFor(
      body.incidentId,
      "action submitted",
      {
        actionId: body.id,
        name: body.name,
        target: body.target,
        operations: body.operations.map(notedOperation),
        signers,
        heldForApproval: held,
      },
      actor,
    );
  }

  actionApproved(record: StoredAction, approver: string, released: boolean, actor: string): Promise<void> {
    return this.notebook.recordFor(
      record.incidentId,
      "action approved",
      { actionId: record.id, name: record.name, approver, signers: record.signerNames, released },
      actor,
    );
  }

  actionCompleted(action: OpenAction): Promise<void> {
    return this.notebook.recordFor(action.record.incidentId, "results summary", this.resultsSummary(action));
  }

  /**
   * An alert goes into an incident's notebook only when it comes from a watch
   * that the incident's action started on that very agent (the signed action
   * asked for a watch of that name, and the agent's command ran), and with the
   * hostname the coordinator knows, never the one the message claims: one
   * agent's credentials must not write pages into an incident.
   */
  async alertStored(alert: Alert): Promise<void> {
    if (!alert.actionId) return;
    try {
      const incident = await this.incidentOf(alert.actionId);
      if (!incident) return;
      if (!(await this.startedWatch(alert))) {
        this.deps.untrusted(`agent ${alert.agentId}`, "alert not put in the notebook", {
          actionId: alert.actionId,
          agentId: alert.agentId,
          code: Codes.NOT_ALLOWED,
          message: `action ${alert.actionId} started no watch "${alert.watch.slice(0, 64)}" on this agent`,
        });
        return;
      }
      const hostname = this.deps.hostname(alert.agentId) || alert.agentId;
      await this.notebook.recordFor(incident, "alert", Alert.toJSON({ ...alert, hostname }));
    } catch (err) {
      this.deps.log.error("alert not put in the notebook", { action: alert.actionId, error: err });
    }
  }

  /** Whether the alert's action asked for its watch, and the alert's agent ran (or runs) that action. */
  private async startedWatch(alert: Alert): Promise<boolean> {
    const open = this.deps.openAction(alert.actionId);
    const record = open?.record ?? (await this.deps.store.getAction(alert.actionId));
    if (!record) return false;
    const body = open?.body ?? ActionBody.decode(SignedAction.decode(record.signed).body);
    const asked = body.operations.some(
      (op) =>
        op.module?.$case === "drift" &&
        op.module.value.mode === "watch_start" &&
        (op.module.value.name || "default") === alert.watch,
    );
    const command = open
      ? open.byAgent.get(alert.agentId)
      : (await this.deps.store.commandsOf(alert.actionId)).find((c) => c.agentId === alert.agentId);
    const ran =
      command?.status === CommandStatus.COMMAND_STATUS_SUCCESS ||
      (command !== undefined && !isFinal(command.status));
    return asked && ran;
  }

  evidenceStored(item: EvidenceItem): Promise<void> {
    return this.notebook.recordFor(item.incidentId, "evidence collected", EvidenceItem.toJSON(item));
  }

  /** A custody event (hand-over or export) of an evidence item, on its incident's notebook. */
  async recordCustody(
    evidenceId: string,
    event: string,
    to: string,
    note: string,
    sha256: string,
    who: string,
  ): Promise<Page> {
    if (event !== "transfer" && event !== "export")
      throw new DragnetError(Codes.PARAMS, "custody event is transfer or export");
    if (!to.trim() || to.length > 500)
      throw new DragnetError(Codes.PARAMS, "say to whom (name/organisation) or where it went");
    const { item } = await this.deps.evidence.get(evidenceId);
    if (!item.incidentId) {
      throw new DragnetError(
        Codes.PARAMS,
        `evidence ${item.id} belongs to no incident: its custody has no notebook to go in`,
      );
    }
    return this.notebook.record(
      item.incidentId,
      "custody transfer",
      {
        evidenceId: item.id,
        event,
        to,
        note,
        sha256: sha256 || item.sha256,
        path: item.path,
        hostname: item.hostname,
      },
      who,
    );
  }

  /** Tells a role about an incident: the page records who, what, when, and what the role's webhook answered. */
  async notify(incidentId: string, to: string, message: string, who: string) {
    if (!to.trim() || to.length > 200)
      throw new DragnetError(Codes.PARAMS, "say who is notified (a role: legal counsel, management…)");
    const incident = await this.notebook.get(incidentId);
    const atMs = this.deps.now();
    const webhook = await this.deps.notifier.send({
      incident: {
        id: incident.id,
        title: incident.title,
        severity: incident.severity,
        phase: incident.phase,
      },
      to,
      message,
      by: who,
      atMs,
    });
    const page = await this.notebook.record(incident.id, "notification", { to, message, webhook }, who);
    return { page, webhook };
  }

  /** An incident as the API shows it. */
  info(i: StoredIncident): Incident {
    return {
      id: i.id,
      title: i.title,
      severity: i.severity,
      phase: i.phase,
      openedAtMs: i.openedAtMs,
      openedBy: i.openedBy,
      pages: i.headPages,
    };
  }

  /** The post-incident report of an incident, as Markdown or a self-contained HTML page. */
  async report(idOrPrefix: string, format: string): Promise<string> {
    if (format && format !== "md" && format !== "html")
      throw new DragnetError(Codes.PARAMS, `report format is md or html, not "${format.slice(0, 10)}"`);
    const incident = await this.notebook.get(idOrPrefix);
    const pages = await this.notebook.pages(incident.id);
    const actionIds = [
      ...new Set(
        pages
          .filter((p) => p.kind === "action submitted")
          .map((p) => (JSON.parse(p.content) as { actionId?: string }).actionId)
          .filter((id): id is string => typeof id === "string"),
      ),
    ];
    const actions: ActionSummary[] = [];
    for (const id of actionIds) {
      // An action the store no longer has is left out of the report, not made its failure.
      const summary = await this.deps.actionSummary(id).catch(() => undefined);
      if (summary) actions.push(summary);
    }
    const input: ReportInput = {
      incident,
      pages,
      actions,
      evidence: await this.deps.evidence.list(incident.id, 10_000),
      chain: await this.notebook.verify(incident.id),
      generatedAtMs: this.deps.now(),
    };
    return format === "html" ? renderHtml(input) : renderMarkdown(input);
  }

  /** The incident an action belongs to ("" when none, or no such action). */
  private async incidentOf(actionId: string): Promise<string> {
    if (!actionId) return "";
    const open = this.deps.openAction(actionId);
    if (open) return open.record.incidentId;
    return (await this.deps.store.getAction(actionId))?.incidentId ?? "";
  }

  /** The notebook page when an action completes: its counts and which hosts found something. */
  private resultsSummary(action: OpenAction) {
    const found = [...action.byId.values()]
      .filter((c) => c.found)
      .map((c) => this.deps.hostname(c.agentId) || c.agentId);
    return {
      actionId: action.record.id,
      name: action.record.name,
      modules: action.record.modules,
      counts: action.counts,
      found: found.slice(0, 100),
      foundMore: Math.max(0, found.length - 100),
    };
  }

  /**
   * Isolation and its lifting go into the action's incident, with the snapshot taken before isolating.
   * Its pages are asked for before this returns when the action is open (its results summary comes
   * after them); a late answer's action is read from the store first.
   */
  resultStored(actionId: string, agentId: string, result: CommandResult): void {
    const isolation = result.operations.flatMap((op) =>
      op.module?.$case === "isolate" || op.module?.$case === "unisolate" ? [op.module] : [],
    );
    if (isolation.length === 0) return;
    const write = (incidentId: string) => {
      if (!incidentId) return;
      for (const m of isolation) {
        void this.notebook.recordFor(incidentId, m.$case === "isolate" ? "isolation" : "unisolation", {
          actionId,
          agentId,
          hostname: this.deps.hostname(agentId),
          ...(IsolateResult.toJSON(m.value) as object),
        });
      }
    };
    const open = this.deps.openAction(actionId);
    if (open) {
      write(open.record.incidentId);
      return;
    }
    this.deps.store
      .getAction(actionId)
      .then((record) => write(record?.incidentId ?? ""))
      .catch((err: unknown) =>
        this.deps.log.error("isolation page not written", { action: actionId, error: err }),
      );
  }
}
