import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname as osHostname } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { readableByOthers } from "../../common/files.js";
import { Codes, DragnetError } from "../../common/mod.js";
import { EXPORT_KINDS, type ExportKind } from "./source.js";

// The coordinator config's `exports` list: each entry a sink that carries some
// kinds of records to a SOC receiver. Secrets (headers, tokens) and CA files
// are read here, once, so a bad file is refused at start, not at first delivery.

export interface RetrySettings {
  minMs: number;
  maxMs: number;
}

interface SinkCommon {
  /** Unique among sinks; the store keys the sink's cursors by it. */
  name: string;
  carries: ExportKind[];
  /** Records per delivery. */
  batch: number;
  retry: RetrySettings;
}

export type SyslogTransport = "tcp" | "tls" | "udp";

export interface SyslogSinkConfig extends SinkCommon {
  type: "syslog";
  host: string;
  port: number;
  transport: SyslogTransport;
  /** CA certificates (PEM) to verify the receiver by (tls); the system's when absent. */
  caPem?: string;
  appName: string;
  /** 0–23; local0 = 16. */
  facility: number;
  /** HOSTNAME in each message (default: this machine's name). */
  hostname: string;
  /** Messages over this are cut (the JSON shortened): 8 KiB for udp, 64 KiB otherwise by default. */
  maxMessageBytes: number;
}

export type HttpFormat = "ndjson" | "hec" | "bulk";

export interface HttpSinkConfig extends SinkCommon {
  type: "http";
  url: string;
  format: HttpFormat;
  /** From headersFile and tokenFile (Authorization). */
  headers: Record<string, string>;
  gzip: boolean;
  /** bulk `_index` / HEC `index`. */
  index?: string;
  caPem?: string;
  timeoutMs: number;
}

export interface FileSinkConfig extends SinkCommon {
  type: "file";
  path: string;
  /** Rotate before a write that would take the file past this. */
  maxBytes: number;
  /** Rotated files kept: path.1 (newest) … path.keep. */
  keep: number;
}

export type ExportSinkConfig = SyslogSinkConfig | HttpSinkConfig | FileSinkConfig;

export const EXPORT_DEFAULTS = {
  batch: 500,
  retry: { minMs: 1_000, maxMs: 60_000 },
  appName: "dragnet",
  facility: 16,
  udpMaxMessageBytes: 8 * 1024,
  streamMaxMessageBytes: 64 * 1024,
  httpTimeoutMs: 30_000,
  fileMaxBytes: 100 * 1024 * 1024,
  fileKeep: 5,
} as const;

const FACILITIES: Record<string, number> = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
};

const COMMON_KEYS = ["name", "carries", "type", "batch", "retry"];
const KEYS: Record<ExportSinkConfig["type"], string[]> = {
  syslog: [
    ...COMMON_KEYS,
    "address",
    "transport",
    "ca",
    "appName",
    "facility",
    "hostname",
    "maxMessageBytes",
  ],
  http: [...COMMON_KEYS, "url", "format", "headersFile", "tokenFile", "gzip", "index", "ca", "timeoutMs"],
  file: [...COMMON_KEYS, "path", "maxBytes", "keep"],
};

function fail(message: string): never {
  throw new DragnetError(Codes.CONFIG, message);
}

type Entry = Record<string, unknown>;

function integer(entry: Entry, key: string, at: string, def: number, min: number, max: number): number {
  const v = entry[key];
  if (v === undefined) return def;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    fail(`${at}.${key} must be a whole number from ${min} to ${max}`);
  return v;
}

function text(entry: Entry, key: string, at: string): string | undefined {
  const v = entry[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") fail(`${at}.${key} must be a non-empty string`);
  return v;
}

function required(entry: Entry, key: string, at: string, what: string): string {
  const v = text(entry, key, at);
  if (v === undefined) fail(`${at}.${key} is missing: ${what}`);
  return v;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    fail(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

function caOf(entry: Entry, at: string, baseDir: string): string | undefined {
  const file = text(entry, "ca", at);
  if (file === undefined) return undefined;
  const path = resolvePath(baseDir, file);
  const pem = readText(path, `${at}.ca`);
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) fail(`${at}.ca ${path} holds no PEM certificate`);
  return pem;
}

function resolvePath(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

function carriesOf(entry: Entry, at: string): ExportKind[] {
  const v = entry.carries;
  if (!Array.isArray(v) || v.length === 0)
    fail(`${at}.carries must be a non-empty list of ${EXPORT_KINDS.join(", ")}`);
  const kinds: ExportKind[] = [];
  for (const k of v) {
    if (!EXPORT_KINDS.includes(k as ExportKind))
      fail(`${at}.carries: ${JSON.stringify(k)} is not one of ${EXPORT_KINDS.join(", ")}`);
    if (kinds.includes(k as ExportKind)) fail(`${at}.carries names ${k} twice`);
    kinds.push(k as ExportKind);
  }
  return kinds;
}

function retryOf(entry: Entry, at: string): RetrySettings {
  const v = entry.retry;
  if (v === undefined) return { ...EXPORT_DEFAULTS.retry };
  if (typeof v !== "object" || v === null || Array.isArray(v))
    fail(`${at}.retry must be an object {minMs, maxMs}`);
  const r = v as Entry;
  const minMs = integer(r, "minMs", `${at}.retry`, EXPORT_DEFAULTS.retry.minMs, 10, 3_600_000);
  const maxMs = integer(
    r,
    "maxMs",
    `${at}.retry`,
    Math.max(minMs, EXPORT_DEFAULTS.retry.maxMs),
    10,
    3_600_000,
  );
  if (maxMs < minMs) fail(`${at}.retry.maxMs (${maxMs}) must not be below retry.minMs (${minMs})`);
  return { minMs, maxMs };
}

/** "host:port" or "[v6]:port". */
function addressOf(entry: Entry, at: string): { host: string; port: number } {
  const address = required(entry, "address", at, 'where the syslog receiver listens, "host:port"');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535)
    fail(`${at}.address must be "host:port" (IPv6 as "[::1]:6514"), not ${JSON.stringify(address)}`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) fail(`${at}.address: ${host} is not an IPv6 address`);
  return { host, port };
}

function facilityOf(entry: Entry, at: string): number {
  const v = entry.facility;
  if (v === undefined) return EXPORT_DEFAULTS.facility;
  if (typeof v === "string" && v in FACILITIES) return FACILITIES[v]!;
  if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 23) return v;
  fail(`${at}.facility must be 0–23 or a name (${Object.keys(FACILITIES).join(", ")})`);
}

function syslogOf(entry: Entry, at: string, common: SinkCommon, baseDir: string): SyslogSinkConfig {
  const { host, port } = addressOf(entry, at);
  const transport = entry.transport ?? "tcp";
  if (transport !== "tcp" && transport !== "tls" && transport !== "udp")
    fail(`${at}.transport must be "tcp", "tls" or "udp"`);
  if (transport === "udp" && !(common.carries.length === 1 && common.carries[0] === "alerts"))
    fail(
      `${at}.transport "udp" may carry only ["alerts"]: UDP loses records silently (no connection, no error), ` +
        "so results, audit, notebook and evidence go over tcp or tls",
    );
  const caPem = caOf(entry, at, baseDir);
  if (caPem !== undefined && transport !== "tls") fail(`${at}.ca is for transport "tls" only`);
  const appName = text(entry, "appName", at) ?? EXPORT_DEFAULTS.appName;
  if (!/^[\x21-\x7e]{1,48}$/.test(appName)) fail(`${at}.appName must be 1–48 printable ASCII characters`);
  const hostname = text(entry, "hostname", at) ?? osHostname();
  if (!/^[\x21-\x7e]{1,255}$/.test(hostname))
    fail(`${at}.hostname must be 1–255 printable ASCII characters, no spaces`);
  const defaultMax =
    transport === "udp" ? EXPORT_DEFAULTS.udpMaxMessageBytes : EXPORT_DEFAULTS.streamMaxMessageBytes;
  // UDP: one datagram per message, well under the 64 KiB an IPv4 datagram can hold.
  const maxMessageBytes = integer(
    entry,
    "maxMessageBytes",
    at,
    defaultMax,
    480,
    transport === "udp" ? 60_000 : 16 << 20,
  );
  return {
    ...common,
    type: "syslog",
    host,
    port,
    transport,
    ...(caPem !== undefined ? { caPem } : {}),
    appName,
    facility: facilityOf(entry, at),
    hostname,
    maxMessageBytes,
  };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function secretFile(entry: Entry, key: string, at: string, baseDir: string): string | undefined {
  const file = text(entry, key, at);
  if (file === undefined) return undefined;
  const path = resolvePath(baseDir, file);
  const content = readText(path, `${at}.${key}`);
  if (readableByOthers(path))
    fail(`${at}.${key} ${path} holds a secret: it must not be readable by others (chmod 600)`);
  return content;
}

function headersOf(entry: Entry, at: string, baseDir: string, format: HttpFormat): Record<string, string> {
  const headers: Record<string, string> = {};
  const raw = secretFile(entry, "headersFile", at, baseDir);
  if (raw !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      fail(`${at}.headersFile must hold a JSON object of header name → value`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      fail(`${at}.headersFile must hold a JSON object of header name → value`);
    for (const [name, value] of Object.entries(parsed)) {
      if (!HEADER_NAME.test(name)) fail(`${at}.headersFile: ${JSON.stringify(name)} is not a header name`);
      if (typeof value !== "string" || /[\r\n\0]/.test(value))
        fail(`${at}.headersFile: the value of ${name} must be a one-line string`);
      headers[name] = value;
    }
  }
  const token = secretFile(entry, "tokenFile", at, baseDir)?.trim();
  if (token !== undefined) {
    if (!/^[\x21-\x7e]+$/.test(token))
      fail(`${at}.tokenFile must hold one token (printable ASCII, no spaces)`);
    if (Object.keys(headers).some((h) => h.toLowerCase() === "authorization"))
      fail(`${at}: give tokenFile or an Authorization header in headersFile, not both`);
    headers.Authorization = format === "hec" ? `Splunk ${token}` : `Bearer ${token}`;
  }
  return headers;
}

function httpOf(entry: Entry, at: string, common: SinkCommon, baseDir: string): HttpSinkConfig {
  const url = required(entry, "url", at, "the receiver's http(s) URL");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    fail(`${at}.url must be an http(s) URL, not ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    fail(`${at}.url must be an http(s) URL, not ${parsed.protocol}`);
  if (parsed.username || parsed.password)
    fail(`${at}.url carries credentials: put them in headersFile or tokenFile (not readable by others)`);
  const format = entry.format;
  if (format !== "ndjson" && format !== "hec" && format !== "bulk")
    fail(
      `${at}.format must be "ndjson", "hec" (Splunk HTTP Event Collector) or "bulk" (Elasticsearch/OpenSearch _bulk)`,
    );
  const index = text(entry, "index", at);
  if (index !== undefined && format === "ndjson") fail(`${at}.index is for formats "hec" and "bulk"`);
  if (format === "bulk" && index === undefined && !/\/[^/]+\/_bulk\/?$/.test(parsed.pathname))
    fail(`${at}: format "bulk" needs an index: set index, or a URL ending in /<index>/_bulk`);
  const caPem = caOf(entry, at, baseDir);
  if (caPem !== undefined && parsed.protocol !== "https:") fail(`${at}.ca is for https URLs only`);
  return {
    ...common,
    type: "http",
    url,
    format,
    headers: headersOf(entry, at, baseDir, format),
    gzip: gzipOf(entry, at),
    ...(index !== undefined ? { index } : {}),
    ...(caPem !== undefined ? { caPem } : {}),
    timeoutMs: integer(entry, "timeoutMs", at, EXPORT_DEFAULTS.httpTimeoutMs, 100, 600_000),
  };
}

function gzipOf(entry: Entry, at: string): boolean {
  const v = entry.gzip;
  if (v === undefined) return false;
  if (typeof v !== "boolean") fail(`${at}.gzip must be true or false`);
  return v;
}

function fileOf(entry: Entry, at: string, common: SinkCommon, baseDir: string): FileSinkConfig {
  const path = resolvePath(baseDir, required(entry, "path", at, "the file to append records to"));
  return {
    ...common,
    type: "file",
    path,
    maxBytes: integer(entry, "maxBytes", at, EXPORT_DEFAULTS.fileMaxBytes, 1024, Number.MAX_SAFE_INTEGER),
    keep: integer(entry, "keep", at, EXPORT_DEFAULTS.fileKeep, 0, 1000),
  };
}

/**
 * Checks the coordinator config's `exports` list (undefined: no sinks) and
 * reads the files it names (relative to `baseDir`). Throws a CONFIG
 * DragnetError that names the entry and setting at fault.
 */
export function parseExports(json: unknown, baseDir: string): ExportSinkConfig[] {
  if (json === undefined) return [];
  if (!Array.isArray(json)) fail("exports must be a list of sinks");
  const sinks: ExportSinkConfig[] = [];
  const names = new Set<string>();
  json.forEach((raw, i) => {
    const at = `exports[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(`${at} must be an object`);
    const entry = raw as Entry;
    const name = required(entry, "name", at, "each sink needs a name (its cursors are kept under it)");
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) fail(`${at}.name must be 1–64 of A–Z, a–z, 0–9, _ and -`);
    if (names.has(name)) fail(`${at}.name ${name} is taken by an earlier sink: names must be unique`);
    names.add(name);
    const type = entry.type;
    if (type !== "syslog" && type !== "http" && type !== "file")
      fail(`${at}.type must be "syslog", "http" or "file"`);
    for (const key of Object.keys(entry))
      if (!KEYS[type].includes(key)) fail(`${at}.${key} is not a setting of a ${type} sink`);
    const common: SinkCommon = {
      name,
      carries: carriesOf(entry, at),
      batch: integer(entry, "batch", at, EXPORT_DEFAULTS.batch, 1, 10_000),
      retry: retryOf(entry, at),
    };
    sinks.push(
      type === "syslog"
        ? syslogOf(entry, at, common, baseDir)
        : type === "http"
          ? httpOf(entry, at, common, baseDir)
          : fileOf(entry, at, common, baseDir),
    );
  });
  return sinks;
}
