import type { AuditFieldsOfEntry, AuditHead, ChainedAudit } from "../../common/audit-chain.js";
import type { Page } from "../../common/journal.js";
import type { ActionState, AuditEntry, CommandStatus } from "../../proto/api.js";
import type { ExportSource } from "../exports/source.js";
import type { CoordinatorCluster } from "./pg-cluster.js";

// What the coordinator keeps. Two backends provide it: SQLite (embedded, one
// coordinator, the default) and PostgreSQL (several coordinators share it).
// Every call is asynchronous because PostgreSQL's are; SQLite answers at once.

export interface StoredEnrollmentToken {
  id: string;
  /** Hex SHA-256 of the token's secret: the secret itself is shown once, at creation. */
  secretSha256: string;
  /** Tags an agent enrolled with it reports. */
  tags: Record<string, string>;
  /** How many agents may enrol with it, and how many did. */
  uses: number;
  used: number;
  expiresAtMs: number;
  createdAtMs: number;
  createdBy: string;
  revokedAtMs?: number;
}

export interface StoredEnrollment {
  agentId: string;
  /** The agent's NATS user public key (its seed never left the agent). */
  publicKey: string;
  tokenId: string;
  hostname: string;
  enrolledAtMs: number;
}

export interface StoredAgent {
  id: string;
  hostname: string;
  os: string;
  osRelease: string;
  arch: string;
  version: string;
  addresses: string[];
  tags: Record<string, string>;
  isolated: boolean;
  startedAtMs: number;
  lastSeenMs: number;
  firstSeenMs: number;
  intervalMs: number;
  /** The last upgrade as the latest heartbeat tells it (kept in memory, not stored). */
  upgrade?: { state: string; version: string; detail: string };
  /** What the latest heartbeat says is wrong on the agent (in memory, not stored). */
  problems?: string[];
  /** The agent's clock minus the coordinator's at its latest heartbeat (in memory, not stored). */
  clockSkewMs?: number;
  /** While isolated, as the latest heartbeat tells it: since when, by which action (in memory, not stored). */
  isolatedSinceMs?: number;
  isolationActionId?: string;
}

export interface StoredAction {
  id: string;
  name: string;
  target: string;
  /** The SignedAction exactly as submitted (encoded). */
  signed: Uint8Array;
  signerKeyIds: string[];
  signerNames: string[];
  modules: string[];
  incidentId: string;
  createdAtMs: number;
  validFromMs: number;
  expiresAtMs: number;
  submittedAtMs: number;
  timeoutMs: number;
  completedAtMs?: number;
  state: ActionState;
  /** Weight its signatures carry for its weakest operation, and what that operation needs. */
  weight: number;
  requiredWeight: number;
  /** A schedule's run: the schedule (whose SignedAction `signed` holds) and the run's number. */
  scheduleId?: string;
  run?: number;
}

export interface StoredCommand {
  id: string;
  actionId: string;
  agentId: string;
  status: CommandStatus;
  problemCode: string;
  problemMessage: string;
  found: boolean;
  createdAtMs: number;
  sentAtMs: number;
  ackedAtMs: number;
  updatedAtMs: number;
}

export interface StoredResult {
  commandId: string;
  actionId: string;
  agentId: string;
  found: boolean;
  /** The CommandResult as the agent encoded it. */
  payload: Uint8Array;
  receivedAtMs: number;
}

export interface StoredAlert {
  /** The store's sequence number (assigned when stored): a cursor for following. */
  seq: number;
  id: string;
  agentId: string;
  atMs: number;
  receivedAtMs: number;
  /** The Alert as the agent encoded it. */
  payload: Uint8Array;
}

export interface StoredEvidence {
  id: string;
  agentId: string;
  incidentId: string;
  receivedAtMs: number;
  /** The EvidenceItem, encoded. */
  payload: Uint8Array;
}

export interface StoredIncident {
  id: string;
  title: string;
  severity: string;
  phase: string;
  openedAtMs: number;
  openedBy: string;
  /** The notebook's sealed head: how many pages, the last page's hash, the journal key's seal over both. */
  headPages: number;
  headHash: string;
  headSeal: string;
}

export interface StoredSchedule {
  id: string;
  name: string;
  target: string;
  /** The SignedAction (a body with a ScheduleSpec) exactly as submitted, encoded. */
  signed: Uint8Array;
  signerNames: string[];
  modules: string[];
  incidentId: string;
  everyMs: number;
  runs: number;
  firstRunAtMs: number;
  endsAtMs: number;
  submittedAtMs: number;
  /** The highest run issued (0: none). */
  lastRun: number;
  stoppedAtMs?: number;
  stoppedBy: string;
  stopReason: string;
  /** The investigator's SignedScheduleStop, encoded. */
  stopSigned?: Uint8Array;
}

/** What a run's answers changed, host by host, as they come in. */
export interface RunTally {
  compared: number;
  baselines: number;
  changed: number;
  added: number;
  vanished: number;
  failed: number;
}

/** A run nobody has answered yet. */
export const NO_TALLY: Readonly<RunTally> = {
  compared: 0,
  baselines: 0,
  changed: 0,
  added: 0,
  vanished: 0,
  failed: 0,
};

export interface StoredScheduleRun extends RunTally {
  scheduleId: string;
  run: number;
  actionId: string;
  issuedAtMs: number;
  targeted: number;
}

/** Schedules, their runs, and each host's rows of its latest compared run. */
export interface ScheduleStore {
  /** Stores a new schedule (before anything is sent). */
  put(schedule: StoredSchedule): Promise<void>;
  get(id: string): Promise<StoredSchedule | undefined>;
  idsByPrefix(prefix: string, limit: number): Promise<string[]>;
  /** Newest first. */
  list(limit: number): Promise<StoredSchedule[]>;
  /** Not stopped and not over at `now`. */
  active(now: number): Promise<StoredSchedule[]>;
  /**
   * Claims run n of a schedule: true once per run however many coordinators
   * ask (the schedule's last run only grows), false when it was issued already.
   */
  claimRun(run: StoredScheduleRun): Promise<boolean>;
  /** Records a stop; false when it was stopped already. */
  stop(id: string, atMs: number, by: string, reason: string, signed: Uint8Array): Promise<boolean>;
  /** The latest `limit` runs, in order. */
  runs(scheduleId: string, limit: number): Promise<StoredScheduleRun[]>;
  run(scheduleId: string, run: number): Promise<StoredScheduleRun | undefined>;
  /** Stopped schedules whose window lasts past `now` (agents are told of the stop again). */
  stoppedUntil(now: number): Promise<StoredSchedule[]>;
  /** The rows a host answered in the latest run compared for it. */
  lastRows(scheduleId: string, agentId: string): Promise<{ run: number; rows: string[] } | undefined>;
  /** One host's answer to a run: its rows (none when it failed: the earlier ones stay) and the run's tally. */
  recordAnswer(
    scheduleId: string,
    agentId: string,
    run: number,
    rows: string[] | undefined,
    tally: Partial<RunTally>,
  ): Promise<void>;
}

/** What one append writes: the page, the incident's new head, and its phase when it changes. */
export interface PageAppend {
  page: Page;
  head: Pick<StoredIncident, "headPages" | "headHash" | "headSeal">;
  phase?: string;
}

/** Writes gathered by the coordinator and applied together, in one transaction. */
export interface WriteBatch {
  agents: StoredAgent[];
  actions: StoredAction[];
  commands: StoredCommand[];
  results: StoredResult[];
  completed: Array<{ actionId: string; atMs: number }>;
  /** Audit entries, each chained and sealed, with its chain's head after it. */
  audit: Array<{ entry: ChainedAudit; head: AuditHead }>;
  /** Alerts (without seq); one an agent sent twice is stored once. */
  alerts: Array<Omit<StoredAlert, "seq">>;
  evidence: StoredEvidence[];
}

/** A batch that writes nothing, to fill in with what one write holds. */
export function emptyWriteBatch(): WriteBatch {
  return {
    agents: [],
    actions: [],
    commands: [],
    results: [],
    completed: [],
    audit: [],
    alerts: [],
    evidence: [],
  };
}

export interface Store {
  readonly schedules: ScheduleStore;
  /** Present when several coordinators may share the store (PostgreSQL): leases and action owners. */
  readonly cluster?: CoordinatorCluster;
  /** The records export sinks read, and where each sink has got to. */
  readonly exportLog: ExportSource;
  /** Applies writes in one transaction; an action written again replaces its earlier row. */
  apply(batch: WriteBatch): Promise<void>;
  /** Refuses an agent's credentials for good (its row goes: it is no longer one of the fleet); false when it was already. */
  revokeAgent(agentId: string, atMs: number, by: string, reason: string): Promise<boolean>;
  revokedAgents(): Promise<string[]>;
  /** The public key an agent enrolled with, if it enrolled. */
  enrolledKey(agentId: string): Promise<string | undefined>;
  /** A chain's sealed head, if it has entries. */
  auditHead(chain: string): Promise<AuditHead | undefined>;
  /** Every audit chain (one per coordinator that wrote to this store). */
  auditChains(): Promise<string[]>;
  /**
   * A chain's head and its entries in order, read together (one snapshot): a coordinator
   * appending to it meanwhile cannot make it look broken.
   */
  auditChain(chain: string): Promise<{ head: AuditHead | undefined; entries: ChainedAudit[] }>;
  /** Entries written before the audit log was chained (a store from before schema 7), oldest first. */
  unchainedAudit(): Promise<Array<{ seq: number } & AuditFieldsOfEntry>>;
  /** Chains those entries, in one transaction. */
  chainOldAudit(entries: Array<{ seq: number; entry: ChainedAudit; head: AuditHead }>): Promise<void>;
  loadAgents(): Promise<StoredAgent[]>;
  getAction(id: string): Promise<StoredAction | undefined>;
  /** Ids starting with the prefix, at most `limit` of them. */
  actionIdsByPrefix(prefix: string, limit: number): Promise<string[]>;
  listActions(limit: number, pendingOnly?: boolean): Promise<StoredAction[]>;
  /** Released actions not yet complete (reloaded after a restart). */
  openActions(): Promise<StoredAction[]>;
  /** Actions waiting for approval. */
  pendingActions(): Promise<StoredAction[]>;
  listAudit(limit: number, actionId?: string): Promise<AuditEntry[]>;
  commandsOf(actionId: string): Promise<StoredCommand[]>;
  getCommand(id: string): Promise<StoredCommand | undefined>;
  resultsOf(actionId: string): Promise<StoredResult[]>;
  hasResult(commandId: string): Promise<boolean>;
  /** Agents whose result for the action found something (target `matched(id)`). */
  matchedAgents(actionId: string): Promise<string[]>;
  /** Alerts with a sequence number above `afterSeq`, oldest first. */
  alertsAfter(afterSeq: number, limit: number): Promise<StoredAlert[]>;
  /** Alerts received at or after `sinceMs` with a sequence number below `beforeSeq`, newest first. */
  alertsBefore(beforeSeq: number, sinceMs: number, limit: number): Promise<StoredAlert[]>;
  /** Evidence items, newest first, of one incident or all. */
  listEvidence(incidentId: string, limit: number): Promise<StoredEvidence[]>;
  getEvidence(id: string): Promise<StoredEvidence | undefined>;
  /** Evidence ids starting with the prefix, at most `limit` of them. */
  evidenceIdsByPrefix(prefix: string, limit: number): Promise<string[]>;
  /** Enrolment tokens, and the agents that used them (written at once, not batched). */
  putEnrollmentToken(token: StoredEnrollmentToken): Promise<void>;
  listEnrollmentTokens(limit: number): Promise<StoredEnrollmentToken[]>;
  getEnrollmentToken(id: string): Promise<StoredEnrollmentToken | undefined>;
  /** False when there is no such token or it was revoked already. */
  revokeEnrollmentToken(id: string, atMs: number): Promise<boolean>;
  /**
   * In one transaction: reads the token and any earlier enrolment of the agent, lets `admit`
   * refuse (by throwing) or say whether this counts as a use, then records the enrolment.
   */
  enrollAgent(
    enrollment: StoredEnrollment,
    admit: (token: StoredEnrollmentToken | undefined, earlier: StoredEnrollment | undefined) => boolean,
  ): Promise<StoredEnrollmentToken>;
  /** Incidents and their notebooks: written at once (not batched), one transaction per page. */
  putIncident(incident: StoredIncident): Promise<void>;
  getIncident(id: string): Promise<StoredIncident | undefined>;
  incidentIdsByPrefix(prefix: string, limit: number): Promise<string[]>;
  listIncidents(limit: number): Promise<StoredIncident[]>;
  /**
   * Appends a page to an incident's notebook, serialised per incident: in one transaction
   * that holds the incident (a row lock in PostgreSQL), `write` is given the incident as it
   * stands and returns the page that follows its head, the new head, and the phase when it
   * changes. Concurrent writers, on any coordinator, each get the head the one before left.
   * Throws when there is no such incident.
   */
  appendPage(incidentId: string, write: (incident: StoredIncident) => PageAppend): Promise<Page>;
  /** An incident's pages in the order they were stored. */
  pagesOf(incidentId: string): Promise<Page[]>;
  close(): Promise<void>;
}
