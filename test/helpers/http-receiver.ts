import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { gunzipSync } from "node:zlib";
import { freePort } from "../../common/ports.js";

// A real HTTP server that takes what the HTTP export sink sends and answers
// the way the products do: Splunk HEC at /services/collector/event, and
// Elasticsearch/OpenSearch `_bulk` at /_bulk or /<index>/_bulk, plus plain
// NDJSON at /ndjson. It checks each body's shape strictly (a sink bug shows as
// a 400 with the reason), gunzips bodies sent with Content-Encoding gzip, and
// counts records by id. Stop and start it again to play an outage.

export interface ReceivedRecord {
  id: string;
  /** "hec", "bulk" or "ndjson". */
  via: string;
  /** The HEC event envelope, the _bulk source document, or the NDJSON object. */
  body: Record<string, unknown>;
  /** The _bulk action line's target index, when given. */
  index?: string;
}

export interface HttpReceiver {
  port: number;
  /** http://127.0.0.1:<port> */
  origin: string;
  /** Every record received, repeats included, in arrival order (only from requests answered 2xx). */
  records: ReceivedRecord[];
  /** How many times each id arrived. */
  counts: Map<string, number>;
  /** Bodies refused as malformed, with the reason (a sink bug: tests expect none). */
  refused: string[];
  /** Request headers of the last request. */
  lastHeaders?: IncomingMessage["headers"];
  /** Answers the next `count` requests with this status and body instead of taking them. */
  failNext(count: number, status: number, body: string): void;
  /** _bulk: answers these ids' items with 429 (rejected), once each, while taking the rest. */
  rejectBulkItemsOnce(ids: string[]): void;
  /** HEC: refuses (400, as HEC does an event it cannot take) any request holding one of these ids, every time. */
  poison(ids: string[]): void;
  /** Requires `Authorization: <value>` (HEC answers 401 without it, 403 when wrong). */
  requireAuthorization(value: string | undefined): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Splits concatenated JSON objects (HEC's batch format: `{…}{…}` or `{…}\n{…}`). */
export function splitConcatenatedJson(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === "{") {
      if (depth === 0) start = i;
      depth++;
    } else if (c === "}") {
      depth--;
      if (depth === 0) out.push(text.slice(start, i + 1));
      if (depth < 0) throw new Error(`unbalanced "}" at ${i}`);
    } else if (depth === 0 && !/\s/.test(c!)) throw new Error(`${JSON.stringify(c)} between events at ${i}`);
  }
  if (depth !== 0 || inString) throw new Error("the last event is cut short");
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Checks one HEC event envelope; returns its dragnet id or throws what is wrong. */
function checkHecEvent(event: unknown): string {
  if (!isObject(event)) throw new Error("an event is not a JSON object");
  if (!("event" in event) || !(isObject(event.event) || typeof event.event === "string"))
    throw new Error("an event has no event object");
  if (event.time !== undefined && typeof event.time !== "number") throw new Error("time is not a number");
  for (const key of ["host", "source", "sourcetype", "index"])
    if (event[key] !== undefined && typeof event[key] !== "string") throw new Error(`${key} is not a string`);
  if (event.fields !== undefined) {
    if (!isObject(event.fields)) throw new Error("fields is not an object");
    for (const [k, v] of Object.entries(event.fields))
      if (typeof v !== "string" && !Array.isArray(v)) throw new Error(`fields.${k} is not a string`);
  }
  const id = (event.fields as Record<string, unknown> | undefined)?.dragnet_id;
  if (typeof id !== "string") throw new Error("no fields.dragnet_id");
  return id;
}

export async function startHttpReceiver(options: { port?: number } = {}): Promise<HttpReceiver> {
  const port = options.port ?? (await freePort());
  let server: Server | undefined;
  let failures: Array<{ status: number; body: string }> = [];
  const rejectOnce = new Set<string>();
  const poisoned = new Set<string>();
  const stored = new Set<string>(); // what the "index" holds: a second create of an id is a 409
  let authorization: string | undefined;

  const receiver: HttpReceiver = {
    port,
    origin: `http://127.0.0.1:${port}`,
    records: [],
    counts: new Map(),
    refused: [],
    failNext(count, status, body) {
      failures = Array.from({ length: count }, () => ({ status, body }));
    },
    poison(ids) {
      for (const id of ids) poisoned.add(id);
    },
    rejectBulkItemsOnce(ids) {
      for (const id of ids) rejectOnce.add(id);
    },
    requireAuthorization(value) {
      authorization = value;
    },
    async start() {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => handle(req, res, Buffer.concat(chunks)));
      });
      await new Promise<void>((resolve, reject) => {
        server!.once("error", reject);
        server!.listen(port, "127.0.0.1", () => resolve());
      });
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections(); // an outage: keep-alive connections go too
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };

  const take = (record: ReceivedRecord) => {
    receiver.records.push(record);
    receiver.counts.set(record.id, (receiver.counts.get(record.id) ?? 0) + 1);
  };

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  };

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer) {
    receiver.lastHeaders = req.headers;
    const failure = failures.shift();
    if (failure) {
      res.writeHead(failure.status, { "Content-Type": "application/json" });
      res.end(failure.body);
      return;
    }
    let text: string;
    try {
      text = (req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw).toString("utf8");
    } catch (err) {
      receiver.refused.push(`gzip: ${(err as Error).message}`);
      return json(res, 400, { error: "bad gzip body" });
    }
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "POST") return json(res, 405, { error: "POST only" });
    if (path === "/services/collector/event") return hec(req, res, text);
    const bulkPath = /^(?:\/([^/]+))?\/_bulk$/.exec(path);
    if (bulkPath) return bulk(req, res, text, bulkPath[1]);
    if (path === "/ndjson") return ndjson(res, text);
    json(res, 404, { error: `no such endpoint ${path}` });
  }

  function hec(req: IncomingMessage, res: ServerResponse, text: string) {
    if (authorization !== undefined) {
      const given = req.headers.authorization;
      if (!given) return json(res, 401, { text: "Token is required", code: 2 });
      if (given !== authorization) return json(res, 403, { text: "Invalid token", code: 4 });
    }
    let events: Array<Record<string, unknown>>;
    const ids: string[] = [];
    try {
      events = splitConcatenatedJson(text).map((e) => JSON.parse(e) as Record<string, unknown>);
      if (events.length === 0) return json(res, 400, { text: "No data", code: 5 });
      for (const event of events) ids.push(checkHecEvent(event));
    } catch (err) {
      receiver.refused.push(`hec: ${(err as Error).message}`);
      return json(res, 400, { text: "Invalid data format", code: 6, "invalid-event-number": ids.length });
    }
    const bad = ids.findIndex((id) => poisoned.has(id));
    if (bad >= 0)
      return json(res, 400, { text: "Invalid data format", code: 6, "invalid-event-number": bad });
    for (const [i, body] of events.entries()) take({ id: ids[i]!, via: "hec", body });
    json(res, 200, { text: "Success", code: 0 });
  }

  function bulk(req: IncomingMessage, res: ServerResponse, text: string, pathIndex?: string) {
    const refuse = (reason: string) => {
      receiver.refused.push(`bulk: ${reason}`);
      json(res, 400, { error: { type: "illegal_argument_exception", reason }, status: 400 });
    };
    if (!String(req.headers["content-type"]).startsWith("application/x-ndjson"))
      return refuse("Content-Type must be application/x-ndjson");
    if (!text.endsWith("\n")) return refuse("The bulk request must be terminated by a newline [\\n]");
    const lines = text.slice(0, -1).split("\n");
    if (lines.length % 2 !== 0) return refuse("an action line without its source line");
    const parsed: Array<{ id: string; index: string; body: Record<string, unknown> }> = [];
    for (let i = 0; i < lines.length; i += 2) {
      let action: unknown;
      let source: unknown;
      try {
        action = JSON.parse(lines[i]!);
        source = JSON.parse(lines[i + 1]!);
      } catch {
        return refuse(`line ${i + 1} or ${i + 2} is not JSON`);
      }
      if (!isObject(action) || !isObject(action.create))
        return refuse(`line ${i + 1} is not a create action`);
      const id = action.create._id;
      const index = action.create._index ?? pathIndex;
      if (typeof id !== "string") return refuse(`line ${i + 1} has no _id`);
      if (typeof index !== "string") return refuse(`line ${i + 1} names no index`);
      if (!isObject(source)) return refuse(`line ${i + 2} is not a source document`);
      parsed.push({ id, index, body: source });
    }
    const items = parsed.map(({ id, index, body }) => {
      if (rejectOnce.delete(id))
        return {
          create: {
            _index: index,
            _id: id,
            status: 429,
            error: { type: "es_rejected_execution_exception", reason: "rejected execution" },
          },
        };
      take({ id, via: "bulk", body, index });
      if (stored.has(id))
        return {
          create: {
            _index: index,
            _id: id,
            status: 409,
            error: { type: "version_conflict_engine_exception", reason: `[${id}]: document already exists` },
          },
        };
      stored.add(id);
      return { create: { _index: index, _id: id, _version: 1, result: "created", status: 201 } };
    });
    const errors = items.some((item) => item.create.status >= 300);
    json(res, 200, { took: 1, errors, items });
  }

  function ndjson(res: ServerResponse, text: string) {
    if (!text.endsWith("\n")) {
      receiver.refused.push("ndjson: no final newline");
      return json(res, 400, { error: "no final newline" });
    }
    const objects = text
      .slice(0, -1)
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const body of objects) take({ id: String(body.id), via: "ndjson", body });
    res.writeHead(204).end();
  }

  await receiver.start();
  return receiver;
}
