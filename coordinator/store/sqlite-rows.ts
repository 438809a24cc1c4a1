import type { ChainedAudit } from "../../common/audit-chain.js";
import type { Page } from "../../common/journal.js";
import type { ActionState, AuditEntry, CommandStatus } from "../../proto/api.js";
import type {
  RunTally,
  StoredAction,
  StoredAgent,
  StoredAlert,
  StoredCommand,
  StoredEnrollmentToken,
  StoredEvidence,
  StoredIncident,
  StoredResult,
  StoredSchedule,
  StoredScheduleRun,
} from "./store.js";

// The SQLite store's rows as SQLite returns them (snake_case columns,
// integers for booleans, JSON text for lists) and their mapping to the
// Store's records.

export interface AgentRow {
  id: string;
  hostname: string;
  os: string;
  os_release: string;
  arch: string;
  version: string;
  addresses: string;
  tags: string;
  isolated: number;
  started_at: number;
  last_seen: number;
  first_seen: number;
  interval_ms: number;
}

export interface ActionRow {
  id: string;
  name: string;
  target: string;
  signed: Buffer;
  signer_key_ids: string;
  signer_names: string;
  modules: string;
  incident_id: string;
  created_at: number;
  valid_from: number;
  expires_at: number;
  submitted_at: number;
  timeout_ms: number;
  completed_at: number | null;
  state: number;
  weight: number;
  required_weight: number;
  schedule_id: string;
  run: number;
}

export interface CommandRow {
  id: string;
  action_id: string;
  agent_id: string;
  status: number;
  problem_code: string;
  problem_message: string;
  found: number;
  created_at: number;
  sent_at: number;
  acked_at: number;
  updated_at: number;
}

export interface ResultRow {
  command_id: string;
  action_id: string;
  agent_id: string;
  found: number;
  payload: Buffer;
  received_at: number;
}

export const toAgent = (r: AgentRow): StoredAgent => ({
  id: r.id,
  hostname: r.hostname,
  os: r.os,
  osRelease: r.os_release,
  arch: r.arch,
  version: r.version,
  addresses: JSON.parse(r.addresses) as string[],
  tags: JSON.parse(r.tags) as Record<string, string>,
  isolated: r.isolated !== 0,
  startedAtMs: r.started_at,
  lastSeenMs: r.last_seen,
  firstSeenMs: r.first_seen,
  intervalMs: r.interval_ms,
});

export const toAction = (r: ActionRow): StoredAction => ({
  id: r.id,
  name: r.name,
  target: r.target,
  signed: r.signed,
  signerKeyIds: JSON.parse(r.signer_key_ids) as string[],
  signerNames: JSON.parse(r.signer_names) as string[],
  modules: JSON.parse(r.modules) as string[],
  incidentId: r.incident_id,
  createdAtMs: r.created_at,
  validFromMs: r.valid_from,
  expiresAtMs: r.expires_at,
  submittedAtMs: r.submitted_at,
  timeoutMs: r.timeout_ms,
  completedAtMs: r.completed_at ?? undefined,
  state: r.state as ActionState,
  weight: r.weight,
  requiredWeight: r.required_weight,
  ...(r.schedule_id ? { scheduleId: r.schedule_id, run: r.run } : {}),
});

export const toCommand = (r: CommandRow): StoredCommand => ({
  id: r.id,
  actionId: r.action_id,
  agentId: r.agent_id,
  status: r.status as CommandStatus,
  problemCode: r.problem_code,
  problemMessage: r.problem_message,
  found: r.found !== 0,
  createdAtMs: r.created_at,
  sentAtMs: r.sent_at,
  ackedAtMs: r.acked_at,
  updatedAtMs: r.updated_at,
});

export const toResult = (r: ResultRow): StoredResult => ({
  commandId: r.command_id,
  actionId: r.action_id,
  agentId: r.agent_id,
  found: r.found !== 0,
  payload: r.payload,
  receivedAtMs: r.received_at,
});

export interface AlertRow {
  seq: number;
  id: string;
  agent_id: string;
  at: number;
  received_at: number;
  payload: Buffer;
}

export const toAlert = (r: AlertRow): StoredAlert => ({
  seq: r.seq,
  id: r.id,
  agentId: r.agent_id,
  atMs: r.at,
  receivedAtMs: r.received_at,
  payload: r.payload,
});

export interface IncidentRow {
  id: string;
  title: string;
  severity: string;
  phase: string;
  opened_at: number;
  opened_by: string;
  head_pages: number;
  head_hash: string;
  head_seal: string;
}

export const toIncident = (r: IncidentRow): StoredIncident => ({
  id: r.id,
  title: r.title,
  severity: r.severity,
  phase: r.phase,
  openedAtMs: r.opened_at,
  openedBy: r.opened_by,
  headPages: r.head_pages,
  headHash: r.head_hash,
  headSeal: r.head_seal,
});

export interface PageRow {
  incident_id: string;
  seq: number;
  at: number;
  author: string;
  author_key_id: string;
  kind: string;
  content: string;
  content_sha256: string;
  prev_hash: string;
  page_hash: string;
  author_signature: string;
  seal: string;
}

export interface EvidenceRow {
  id: string;
  agent_id: string;
  incident_id: string;
  received_at: number;
  payload: Buffer;
}

export const toEvidence = (r: EvidenceRow): StoredEvidence => ({
  id: r.id,
  agentId: r.agent_id,
  incidentId: r.incident_id,
  receivedAtMs: r.received_at,
  payload: r.payload,
});

export interface TokenRow {
  id: string;
  secret_sha256: string;
  tags: string;
  uses: number;
  used: number;
  expires_at: number;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}

export interface EnrollmentRow {
  agent_id: string;
  public_key: string;
  token_id: string;
  hostname: string;
  enrolled_at: number;
}

export const toToken = (r: TokenRow): StoredEnrollmentToken => ({
  id: r.id,
  secretSha256: r.secret_sha256,
  tags: JSON.parse(r.tags) as Record<string, string>,
  uses: r.uses,
  used: r.used,
  expiresAtMs: r.expires_at,
  createdAtMs: r.created_at,
  createdBy: r.created_by,
  ...(r.revoked_at === null ? {} : { revokedAtMs: r.revoked_at }),
});

export const toPage = (r: PageRow): Page => ({
  incidentId: r.incident_id,
  seq: r.seq,
  atMs: r.at,
  author: r.author,
  authorKeyId: r.author_key_id,
  kind: r.kind,
  content: r.content,
  contentSha256: r.content_sha256,
  prevHash: r.prev_hash,
  pageHash: r.page_hash,
  authorSignature: r.author_signature,
  seal: r.seal,
});

export interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  event: string;
  action_id: string;
  agent_id: string;
  code: string;
  message: string;
  chain: string;
  n: number;
  prev_hash: string;
  entry_hash: string;
  seal: string;
}

export const toChainedAudit = (r: AuditRow): ChainedAudit => ({
  atMs: r.at,
  actor: r.actor,
  event: r.event,
  actionId: r.action_id,
  agentId: r.agent_id,
  code: r.code,
  message: r.message,
  chain: r.chain,
  n: r.n,
  prevHash: r.prev_hash,
  entryHash: r.entry_hash,
  seal: r.seal,
});

export interface ScheduleRow {
  id: string;
  name: string;
  target: string;
  signed: Buffer;
  signer_names: string;
  modules: string;
  incident_id: string;
  every_ms: number;
  runs: number;
  first_run_at: number;
  ends_at: number;
  submitted_at: number;
  last_run: number;
  stopped_at: number | null;
  stopped_by: string;
  stop_reason: string;
  stop_signed: Buffer | null;
}

export interface RunRow extends RunTally {
  schedule_id: string;
  run: number;
  action_id: string;
  issued_at: number;
  targeted: number;
}

export const toSchedule = (r: ScheduleRow): StoredSchedule => ({
  id: r.id,
  name: r.name,
  target: r.target,
  signed: r.signed,
  signerNames: JSON.parse(r.signer_names) as string[],
  modules: JSON.parse(r.modules) as string[],
  incidentId: r.incident_id,
  everyMs: r.every_ms,
  runs: r.runs,
  firstRunAtMs: r.first_run_at,
  endsAtMs: r.ends_at,
  submittedAtMs: r.submitted_at,
  lastRun: r.last_run,
  stoppedAtMs: r.stopped_at ?? undefined,
  stoppedBy: r.stopped_by,
  stopReason: r.stop_reason,
  stopSigned: r.stop_signed ?? undefined,
});

export const toRun = (r: RunRow): StoredScheduleRun => ({
  scheduleId: r.schedule_id,
  run: r.run,
  actionId: r.action_id,
  issuedAtMs: r.issued_at,
  targeted: r.targeted,
  compared: r.compared,
  baselines: r.baselines,
  changed: r.changed,
  added: r.added,
  vanished: r.vanished,
  failed: r.failed,
});

/** An audit row as the API lists it (without its chain). */
export const toAuditEntry = (
  r: Pick<AuditRow, "at" | "actor" | "event" | "action_id" | "agent_id" | "code" | "message">,
): AuditEntry => ({
  atMs: r.at,
  actor: r.actor,
  event: r.event,
  actionId: r.action_id,
  agentId: r.agent_id,
  code: r.code,
  message: r.message,
});
