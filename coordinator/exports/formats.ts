// How an export record looks on each wire: pure functions, no I/O.
//
// ECS mapping (Elasticsearch/OpenSearch `_bulk` source documents):
//
//   @timestamp          record time (ISO 8601, ms, UTC)
//   message             the one-line summary for people
//   event.kind          "alert" for alerts, "event" for every other kind
//   event.category      results: ["host"]; alerts: ["intrusion_detection"];
//                       audit: ["iam"] (who signed, approved, submitted what);
//                       notebook: ["host"]; evidence: ["file"]
//   event.dataset       "dragnet.<kind>" (dragnet.results, dragnet.alerts, …)
//   event.id            the record id, "<kind>:<natural id>" — also the document
//                       `_id`, so a repeat delivery is refused (409) by the index
//   event.module        "dragnet"
//   host.name           the agent's hostname, when the record is about an agent
//   agent.id            the Dragnet agent id, when the record is about an agent
//   labels              dragnet_kind, dragnet_action, dragnet_incident (keywords)
//   dragnet.action_id   the action the record belongs to, when there is one
//   dragnet.incident_id the incident the record belongs to, when there is one
//   dragnet.<kind>.*    the record itself (results under dragnet.results, alerts
//                       under dragnet.alerts, …): one object per kind so fields of
//                       the same name in two kinds never fight over one mapping
//
// Splunk HEC events: time (epoch seconds, ms fraction), host (agent hostname or
// the coordinator's), source "dragnet", sourcetype "dragnet:<kind>", index when
// configured, event = the NDJSON object below, fields.dragnet_id/dragnet_kind
// (indexed fields, searchable without parsing the event).
//
// Syslog: RFC 5424 with one SD-ELEMENT `[dragnet@32473 …]`. 32473 is the
// private enterprise number RFC 5612 reserves for documentation and examples;
// a deployment that owns a number can only change it here.

import type { ExportKind, ExportRecord } from "./source.js";

// NDJSON.

/** The record as one JSON object (NDJSON line, HEC event, file sink line). */
export function recordObject(record: ExportRecord): Record<string, unknown> {
  return {
    id: record.id,
    kind: record.kind,
    "@timestamp": new Date(record.atMs).toISOString(),
    ...(record.agentId !== undefined ? { agentId: record.agentId } : {}),
    ...(record.hostname !== undefined ? { hostname: record.hostname } : {}),
    ...(record.actionId !== undefined ? { actionId: record.actionId } : {}),
    ...(record.incidentId !== undefined ? { incidentId: record.incidentId } : {}),
    message: record.message,
    data: record.data,
  };
}

/** One JSON object per line, each line ending in "\n". */
export function formatNdjson(records: readonly ExportRecord[]): string {
  let out = "";
  for (const record of records) out += `${JSON.stringify(recordObject(record))}\n`;
  return out;
}

// Splunk HTTP Event Collector.

export interface HecOptions {
  /** HEC `index`; omitted so the token's default index applies. */
  index?: string;
  /** `host` for records that name no hostname (the coordinator's). */
  defaultHost: string;
}

/** The HEC event envelope for one record. */
export function hecEvent(record: ExportRecord, options: HecOptions): Record<string, unknown> {
  return {
    // Epoch seconds with the milliseconds as a fraction (HEC's `<sec>.<ms>`).
    time: Math.round(record.atMs) / 1000,
    host: record.hostname ?? options.defaultHost,
    source: "dragnet",
    sourcetype: `dragnet:${record.kind}`,
    ...(options.index !== undefined ? { index: options.index } : {}),
    event: recordObject(record),
    fields: { dragnet_id: record.id, dragnet_kind: record.kind },
  };
}

/** A HEC `/services/collector/event` body: the events one after another (HEC takes them batched so). */
export function formatHec(records: readonly ExportRecord[], options: HecOptions): string {
  let out = "";
  for (const record of records) out += `${JSON.stringify(hecEvent(record, options))}\n`;
  return out;
}

/** Whether a HEC answer body says the events were taken: `{"text":"Success","code":0}`. */
export function hecAccepted(body: string): boolean {
  try {
    const answer = JSON.parse(body) as { code?: unknown };
    return answer.code === 0;
  } catch {
    return false;
  }
}

// Elasticsearch / OpenSearch _bulk.

const ECS_CATEGORY: Record<ExportKind, string[]> = {
  results: ["host"],
  alerts: ["intrusion_detection"],
  audit: ["iam"],
  notebook: ["host"],
  evidence: ["file"],
};

/** The ECS-style source document for one record (mapping above). */
export function ecsDocument(record: ExportRecord): Record<string, unknown> {
  const labels: Record<string, string> = { dragnet_kind: record.kind };
  if (record.actionId !== undefined) labels.dragnet_action = record.actionId;
  if (record.incidentId !== undefined) labels.dragnet_incident = record.incidentId;
  return {
    "@timestamp": new Date(record.atMs).toISOString(),
    message: record.message,
    event: {
      kind: record.kind === "alerts" ? "alert" : "event",
      category: ECS_CATEGORY[record.kind],
      dataset: `dragnet.${record.kind}`,
      id: record.id,
      module: "dragnet",
    },
    ...(record.hostname !== undefined ? { host: { name: record.hostname } } : {}),
    ...(record.agentId !== undefined ? { agent: { id: record.agentId } } : {}),
    labels,
    dragnet: {
      ...(record.actionId !== undefined ? { action_id: record.actionId } : {}),
      ...(record.incidentId !== undefined ? { incident_id: record.incidentId } : {}),
      [record.kind]: record.data,
    },
  };
}

/**
 * A `_bulk` body: a `create` action line with `_id` = record id, then the
 * source line, for each record; the body ends with "\n" as the API requires.
 * `create` (never `index`) so a repeated record is refused with 409 instead of
 * overwriting — and data streams accept only `create`.
 */
export function formatBulk(records: readonly ExportRecord[], index?: string): string {
  let out = "";
  for (const record of records) {
    const action = { create: { ...(index !== undefined ? { _index: index } : {}), _id: record.id } };
    out += `${JSON.stringify(action)}\n${JSON.stringify(ecsDocument(record))}\n`;
  }
  return out;
}

/**
 * Why a `_bulk` answer (HTTP 200) is not a success, or undefined when every item
 * was created or was already there (409: a repeat, which is what `create` with
 * our ids is for).
 */
export function bulkFailure(body: string): string | undefined {
  let answer: { errors?: unknown; items?: unknown };
  try {
    answer = JSON.parse(body) as typeof answer;
  } catch {
    return `the _bulk answer is not JSON: ${body.slice(0, 200)}`;
  }
  if (!Array.isArray(answer.items)) return `the _bulk answer has no items: ${body.slice(0, 200)}`;
  if (answer.errors === false) return undefined;
  let failed = 0;
  let first: string | undefined;
  for (const item of answer.items as Array<Record<string, { status?: number; error?: unknown }>>) {
    const result = item && typeof item === "object" ? Object.values(item)[0] : undefined;
    const status = result?.status ?? 0;
    if ((status >= 200 && status < 300) || status === 409) continue;
    failed++;
    first ??= `status ${status}: ${JSON.stringify(result?.error ?? null).slice(0, 200)}`;
  }
  return failed ? `${failed} of ${answer.items.length} _bulk items failed (first: ${first})` : undefined;
}

/** Whether every failed `_bulk` item was refused for its content (a 4xx other than 409 and 429). */
export function bulkRefusedForData(body: string): boolean {
  try {
    const items = (JSON.parse(body) as { items?: Array<Record<string, { status?: number }>> }).items ?? [];
    const failed = items
      .map((item) => Object.values(item ?? {})[0]?.status ?? 0)
      .filter((s) => !((s >= 200 && s < 300) || s === 409));
    return failed.length > 0 && failed.every((s) => s >= 400 && s < 500 && s !== 429);
  } catch {
    return false;
  }
}

// Syslog (RFC 5424).

export const SEVERITY = { warning: 4, notice: 5, info: 6 } as const;

/** alerts → warning, audit → notice, everything else → informational. */
export function severityOf(kind: ExportKind): number {
  return kind === "alerts" ? SEVERITY.warning : kind === "audit" ? SEVERITY.notice : SEVERITY.info;
}

export interface SyslogOptions {
  /** Facility number 0–23 (local0 = 16). */
  facility: number;
  /** HOSTNAME: the sender, the coordinator (the agent's hostname is in the SD `host` param). */
  hostname: string;
  /** APP-NAME. */
  appName: string;
  /** PROCID. */
  procId: string;
  /** The whole message (header, SD, MSG) is cut to at most this many bytes, by shortening the JSON. */
  maxBytes: number;
}

export const SD_ID = "dragnet@32473";
/** SD-PARAM values longer than this (in characters) are cut: they are identifiers, not payload. */
export const SD_VALUE_MAX = 256;

const BOM = "\uFEFF";

/** PRINTUSASCII only (33–126), at most `max` characters, "-" (NILVALUE) when empty. */
function headerField(value: string | undefined, max: number): string {
  const clean = (value ?? "").replace(/[^\x21-\x7e]/g, "_").slice(0, max);
  return clean === "" ? "-" : clean;
}

/** An SD-PARAM value: bounded, with `"`, `\` and `]` escaped by a backslash (RFC 5424 §6.3.3). */
export function escapeSdValue(value: string): string {
  const bounded = [...value].slice(0, SD_VALUE_MAX).join("");
  return bounded.replace(/["\\\]]/g, (c) => `\\${c}`);
}

function structuredData(record: ExportRecord, truncatedBytes?: number): string {
  const params: Array<[string, string | undefined]> = [
    ["id", record.id],
    ["kind", record.kind],
    ["agent", record.agentId],
    ["host", record.hostname],
    ["action", record.actionId],
    ["incident", record.incidentId],
    ["truncated", truncatedBytes === undefined ? undefined : String(truncatedBytes)],
  ];
  let out = `[${SD_ID}`;
  for (const [name, value] of params) if (value !== undefined) out += ` ${name}="${escapeSdValue(value)}"`;
  return `${out}]`;
}

/** The largest prefix of `text` whose UTF-8 encoding fits in `maxBytes`, never cutting a character. */
export function cutUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = Math.max(0, maxBytes);
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  return bytes.subarray(0, end).toString("utf8");
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`
 * with MSG = the summary, a space, the JSON of data. When the whole is over
 * `maxBytes` the JSON is cut (it is no longer valid JSON then) and the SD says
 * so with `truncated="<full message bytes>"`. MSG starts with a BOM when it is
 * not plain ASCII, which RFC 5424 asks for UTF-8 text.
 */
export function formatSyslog(record: ExportRecord, options: SyslogOptions): string {
  const pri = options.facility * 8 + severityOf(record.kind);
  const header = [
    `<${pri}>1`,
    new Date(record.atMs).toISOString(),
    headerField(options.hostname, 255),
    headerField(options.appName, 48),
    headerField(options.procId, 128),
    headerField(record.kind, 32),
  ].join(" ");
  // One line: newlines in the summary would split it for receivers that frame by LF.
  const summary = record.message.replace(/[\r\n]+/g, " ");
  const json = JSON.stringify(record.data);
  const text = `${summary} ${json}`;
  const bom = Buffer.byteLength(text) === text.length ? "" : BOM; // same length: ASCII only
  const whole = `${header} ${structuredData(record)} ${bom}${text}`;
  const size = Buffer.byteLength(whole);
  if (size <= options.maxBytes) return whole;
  const marker = " ...(truncated)";
  const prefix = `${header} ${structuredData(record, size)} ${bom}${summary} `;
  const room = options.maxBytes - Buffer.byteLength(prefix) - Buffer.byteLength(marker);
  if (room <= 0) return cutUtf8(prefix, options.maxBytes);
  return `${prefix}${cutUtf8(json, room)}${marker}`;
}

/** RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes. */
export function octetCounted(message: string): string {
  return `${Buffer.byteLength(message)} ${message}`;
}
