import { Alert, CommandResult, CommandStatus, EvidenceItem } from "../../proto/api.js";
import type { ExportKind, ExportRecord } from "../exports/source.js";

// Stored rows turned into export records, for both stores: each backend reads
// its rows under the same column names (snake_case, as the schemas name them,
// with `seq` the order they were stored in) and hands them here.

export type ExportRow = Record<string, unknown> & { seq: number };

/** A batch read stops past this many bytes of stored records (at least one is read). */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;

const str = (v: unknown) => (typeof v === "string" ? v : "");
const num = (v: unknown) => (typeof v === "number" ? v : 0);

function resultRecord(r: ExportRow): ExportRecord {
  const result = CommandResult.decode(r.payload as Buffer);
  const host = str(r.hostname) || str(r.agent_id);
  const status = CommandStatus[result.status]?.replace("COMMAND_STATUS_", "").toLowerCase() ?? "unknown";
  return {
    kind: "results",
    id: `result:${str(r.command_id)}`,
    atMs: num(r.received_at),
    agentId: str(r.agent_id),
    hostname: str(r.hostname),
    actionId: str(r.action_id),
    incidentId: str(r.incident_id) || undefined,
    message: `${str(r.action_name) || "action"} on ${host}: ${status}, ${result.found ? "found" : "nothing found"}`,
    data: CommandResult.toJSON(result) as Record<string, unknown>,
  };
}

function alertRecord(r: ExportRow): ExportRecord {
  const alert = Alert.decode(r.payload as Buffer);
  const host = alert.hostname || alert.agentId;
  const count = alert.rows.length || alert.changes.length + alert.changesOmitted;
  const what = alert.scheduleId
    ? `schedule ${alert.watch} run ${alert.run}`
    : `${alert.source} watch ${alert.watch}`;
  return {
    kind: "alerts",
    id: `alert:${alert.agentId}:${alert.id}`,
    atMs: alert.atMs,
    agentId: alert.agentId,
    hostname: alert.hostname,
    actionId: alert.actionId || undefined,
    message: `${what} on ${host}: ${count} change${count === 1 ? "" : "s"}`,
    data: Alert.toJSON(alert) as Record<string, unknown>,
  };
}

function auditRecord(r: ExportRow): ExportRecord {
  const chain = str(r.chain);
  return {
    kind: "audit",
    // The chain and position name an entry for good (an entry from before chains: its seq).
    id: chain && num(r.n) ? `audit:${chain}:${num(r.n)}` : `audit:seq:${r.seq}`,
    atMs: num(r.at),
    agentId: str(r.agent_id) || undefined,
    actionId: str(r.action_id) || undefined,
    message: `${str(r.actor)}: ${str(r.event)}${r.message ? ` — ${str(r.message)}` : ""}`,
    data: {
      actor: r.actor,
      event: r.event,
      actionId: r.action_id,
      agentId: r.agent_id,
      code: r.code,
      message: r.message,
      chain,
      n: r.n,
      entryHash: r.entry_hash,
      prevHash: r.prev_hash,
    },
  };
}

function pageRecord(r: ExportRow): ExportRecord {
  let content: unknown = r.content;
  try {
    content = JSON.parse(str(r.content));
  } catch {
    // kept as text
  }
  return {
    kind: "notebook",
    id: `notebook:${str(r.incident_id)}:${num(r.page)}`,
    atMs: num(r.at),
    incidentId: str(r.incident_id),
    message: `incident ${str(r.incident_id)} page ${num(r.page)}: ${str(r.kind)} by ${str(r.author)}`,
    data: {
      incidentId: r.incident_id,
      page: r.page,
      author: r.author,
      authorKeyId: r.author_key_id,
      kind: r.kind,
      content,
      contentSha256: r.content_sha256,
      prevHash: r.prev_hash,
      pageHash: r.page_hash,
    },
  };
}

function evidenceRecord(r: ExportRow): ExportRecord {
  const item = EvidenceItem.decode(r.payload as Buffer);
  return {
    kind: "evidence",
    id: `evidence:${str(r.id)}`,
    atMs: num(r.received_at),
    agentId: str(r.agent_id),
    incidentId: str(r.incident_id) || undefined,
    message: `evidence ${str(r.id)} from ${str(r.agent_id)}`,
    data: EvidenceItem.toJSON(item) as Record<string, unknown>,
  };
}

export const TO_RECORD: Record<ExportKind, (r: ExportRow) => ExportRecord> = {
  results: resultRecord,
  alerts: alertRecord,
  audit: auditRecord,
  notebook: pageRecord,
  evidence: evidenceRecord,
};
