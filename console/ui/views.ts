import { pageSummary } from "../../common/notebook-pages.js";
import { rowHeadline } from "../../common/row-headline.js";
import {
  type ActionSummary,
  type AgentInfo,
  type AgentResult,
  Alert,
  type AuditEntry,
  type EvidenceItem,
  type Incident,
  type JournalPage,
  type StoredAlert,
} from "../../proto/api.js";
import { actionStateWord, statusWord } from "../commands/action.js";
import { agentProblems, statusName } from "../commands/agents.js";
import { diffBlock } from "../modules/drift.js";
import type { ResultRows } from "../output/formatters.js";
import type { Row } from "../output/rows.js";
import { answerNotes, arrivedLate } from "../sweep.js";

// What the page is sent: the coordinator's records in the CLI's words (its
// status names, its result rows with the module formatters' fields), so the
// page and the CLI never disagree about what a thing is called.

export function agentView(a: AgentInfo) {
  return {
    id: a.id,
    hostname: a.hostname,
    os: a.os,
    osRelease: a.osRelease,
    version: a.version,
    addresses: a.addresses,
    tags: a.tags,
    status: statusName(a.status),
    isolated: a.isolated,
    isolatedSinceMs: Number(a.isolatedSinceMs),
    isolationActionId: a.isolationActionId,
    lastSeenMs: a.lastSeenMs,
    upgrade: a.upgradeState ? `${a.upgradeVersion} ${a.upgradeState}` : "",
    problems: agentProblems(a),
  };
}

export function actionView(a: ActionSummary) {
  const c = a.counts;
  const answered = (c?.success ?? 0) + (c?.failed ?? 0);
  const finished =
    answered + (c?.rejected ?? 0) + (c?.timeout ?? 0) + (c?.expired ?? 0) + (c?.cancelled ?? 0);
  return {
    id: a.id,
    name: a.name,
    target: a.target,
    modules: a.modules,
    signers: a.signerNames,
    state: actionStateWord(a),
    submittedAtMs: Number(a.submittedAtMs),
    expiresAtMs: Number(a.expiresAtMs),
    completedAtMs: Number(a.completedAtMs),
    incidentId: a.incidentId,
    weight: a.weight,
    requiredWeight: a.requiredWeight,
    targeted: c?.targeted ?? 0,
    answered,
    found: c?.found ?? 0,
    failed: (c?.failed ?? 0) + (c?.timeout ?? 0),
    refused: c?.rejected ?? 0,
    timedOut: c?.timeout ?? 0,
    expired: c?.expired ?? 0,
    cancelled: c?.cancelled ?? 0,
    waiting: (c?.pending ?? 0) + (c?.sent ?? 0) + (c?.running ?? 0),
    waitingOffline: c?.waitingOffline ?? 0,
    percentSwept: c?.targeted ? Math.floor((1000 * finished) / c.targeted) / 10 : 0,
  };
}

/** One agent's part in an action: its state and why, without its rows. */
export function agentStateView(r: AgentResult, s: ActionSummary | undefined) {
  return {
    agentId: r.agentId,
    hostname: r.hostname,
    state: statusWord(r.status),
    found: r.result?.found ?? false,
    reason: r.problem ? `${r.problem.message} [${r.problem.code}]` : "",
    notes: answerNotes(r),
    late: s ? arrivedLate(r, s) : false,
    updatedAtMs: r.updatedAtMs,
  };
}

/** An agent's rows, each as `--json` prints it: the agent, then the module formatter's fields. */
export function resultRowsView(r: AgentResult, rows: ResultRows): Row[] {
  const agent = { id: r.agentId, hostname: r.hostname };
  return (r.result?.operations ?? []).flatMap((op) => rows.of(op).map((row) => ({ agent, ...row })));
}

export function alertView(s: StoredAlert) {
  const a = s.alert!;
  const where = a.hostname || a.agentId;
  return {
    seq: s.seq,
    receivedAtMs: s.receivedAtMs,
    ...(Alert.toJSON(a) as object),
    // toJSON leaves empty lists out: a drift alert has no rows, a schedule's no changes.
    changes: (Alert.toJSON(a) as { changes?: unknown[] }).changes ?? [],
    rows: a.rows.map((r) => ({
      vanished: r.vanished,
      module: r.module,
      row: r.row,
      what: rowHeadline(r.row),
    })),
    hostname: where,
    atMs: Number(a.atMs),
    diffs: a.changes.map((c) => diffBlock(where, c).trim()).filter(Boolean),
  };
}

export function incidentView(i: Incident) {
  return { ...i, openedAtMs: Number(i.openedAtMs) };
}

export function pageView(p: JournalPage) {
  return {
    seq: p.seq,
    atMs: Number(p.atMs),
    author: p.author,
    authorKeyId: p.authorKeyId,
    kind: p.kind,
    what: pageSummary(p),
    signed: p.authorSignature !== "",
    pageHash: p.pageHash,
  };
}

export function evidenceView(e: EvidenceItem) {
  return { ...e, receivedAtMs: Number(e.receivedAtMs), mtimeMs: Number(e.mtimeMs) };
}

export function auditView(e: AuditEntry) {
  return { ...e, atMs: Number(e.atMs) };
}
