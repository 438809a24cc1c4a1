import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Codes, DragnetError, describeError } from "../../common/mod.js";
import { PHASES, SEVERITIES } from "../../common/notebook-pages.js";
import type { CoordinatorApi } from "../client.js";
import { writeResults } from "../commands/action.js";
import { download } from "../commands/evidence.js";
import { addSignedNote } from "../commands/incident.js";
import type { ResultRows } from "../output/formatters.js";
import { RowWriter } from "../output/rows.js";
import { describeForms } from "./forms.js";
import type { Signer } from "./signing.js";
import {
  actionView,
  agentStateView,
  agentView,
  alertView,
  auditView,
  evidenceView,
  incidentView,
  pageView,
  resultRowsView,
} from "./views.js";

// The page's API: JSON in and out, Server-Sent Events for what is live (an
// action's results, the alert stream), each fed by the coordinator's own
// watch streams. Every route is a thin call to what the CLI does.

/** A request body is a form or a note: kilobytes. */
const MAX_BODY = 256 * 1024;
/** Results are sent to the page in batches, so 10,000 rows are a few dozen messages. */
const BATCH_MS = 100;

export interface RouteContext {
  api: CoordinatorApi;
  signer: Signer;
  rows: ResultRows;
  send(res: ServerResponse, status: number, body: string | Buffer, type: string, extra?: object): void;
}

type Handler = (
  ctx: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  params: string[],
) => Promise<unknown>;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function bodyOf(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!String(req.headers["content-type"] ?? "").startsWith("application/json"))
    throw new HttpError(415, "send JSON (Content-Type: application/json)");
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `a request body is at most ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "the request body is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
    throw new HttpError(400, "the request body is a JSON object");
  return parsed as Record<string, unknown>;
}

function text(body: Record<string, unknown>, field: string, max: number, required = true): string {
  const v = body[field] ?? "";
  if (typeof v !== "string") throw new HttpError(400, `${field} is text`);
  if (required && !v.trim()) throw new HttpError(400, `${field} is needed`);
  if (v.length > max) throw new HttpError(400, `${field} is at most ${max} characters`);
  return v;
}

/** Aborted when the page goes away — set up before anything is awaited, so no close is missed. */
function whileConnected(res: ServerResponse): AbortSignal {
  const stop = new AbortController();
  if (res.destroyed) stop.abort();
  else res.on("close", () => stop.abort());
  return stop.signal;
}

/** Server-Sent Events on `res`, ended when the page goes away (`signal`). */
function eventStream(res: ServerResponse, signal: AbortSignal) {
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
  });
  // A comment now and then keeps idle connections (and their proxies) open.
  const ping = setInterval(() => res.write(": ping\n\n"), 15_000);
  signal.addEventListener("abort", () => clearInterval(ping), { once: true });
  return {
    signal,
    event(name: string, data: unknown) {
      if (!signal.aborted) res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      clearInterval(ping);
      res.end();
    },
  };
}

const json = (ctx: RouteContext, res: ServerResponse, value: unknown) =>
  ctx.send(res, 200, JSON.stringify(value), "application/json");

/** An action, followed: its summary as counts change, each agent's state and rows as they answer. */
const liveAction: Handler = async (ctx, _req, res, _url, [id]) => {
  const gone = whileConnected(res);
  const detail = await ctx.api.getAction(id!, false);
  if (gone.aborted) return;
  let summary = detail.summary!;
  const stream = eventStream(res, gone);
  stream.event("columns", [
    { key: "agent.hostname", header: "hostname" },
    ...ctx.rows.columnsFor(summary.modules).map((c) => ({ key: c.key, header: c.header })),
  ]);
  stream.event("summary", actionView(summary));
  let rows: unknown[] = [];
  let agents: unknown[] = [];
  const flush = () => {
    if (agents.length) stream.event("agents", agents);
    if (rows.length) stream.event("rows", rows);
    rows = [];
    agents = [];
  };
  const timer = setInterval(flush, BATCH_MS);
  try {
    await ctx.api.watchAction(
      summary.id,
      (event) => {
        const e = event.event;
        if (!e) return true;
        if (e.$case === "result") {
          agents.push(agentStateView(e.value, summary));
          rows.push(...resultRowsView(e.value, ctx.rows));
          return true;
        }
        summary = e.value;
        flush();
        stream.event("summary", actionView(summary));
        return e.$case !== "done";
      },
      stream.signal,
    );
    flush();
    stream.event("done", actionView(summary));
  } catch (err) {
    stream.event("failure", { error: describeError(err) });
  } finally {
    clearInterval(timer);
    stream.end();
  }
};

/**
 * The alert stream: new alerts as the agents' watches send them, after `after` (with
 * `from_cursor=1`, a cursor even when 0: the page read the past from there).
 */
const liveAlerts: Handler = async (ctx, _req, res, url) => {
  const stream = eventStream(res, whileConnected(res));
  try {
    await ctx.api.watchAlerts(
      url.searchParams.get("target") ?? "",
      Number(url.searchParams.get("after") ?? 0) || 0,
      (alert) => {
        stream.event("alert", alertView(alert));
        return true;
      },
      stream.signal,
      url.searchParams.get("from_cursor") === "1",
    );
  } catch (err) {
    stream.event("failure", { error: describeError(err) });
  } finally {
    stream.end();
  }
};

/** Rows exactly as `dragnet --csv|--json action show ID --results` prints them. */
const exportAction: Handler = async (ctx, _req, res, url, [id]) => {
  const format = url.searchParams.get("format") === "csv" ? "csv" : "json";
  const detail = await ctx.api.getAction(id!, true);
  const s = detail.summary!;
  res.writeHead(200, {
    "Content-Type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson",
    "Content-Disposition": `attachment; filename="action-${s.id}.${format === "csv" ? "csv" : "ndjson"}"`,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
  });
  writeResults(detail.results, ctx.rows, new RowWriter(format, ctx.rows.columnsFor(s.modules), { out: res }));
  res.end();
};

/** An evidence item, its size and SHA-256 checked against the agent's before a byte reaches the page. */
const evidenceFile: Handler = async (ctx, _req, res, _url, [id]) => {
  const gone = whileConnected(res);
  const dir = mkdtempSync(join(tmpdir(), "dragnet-ui-evidence-"));
  try {
    const out = join(dir, "item");
    const { item, size, sha256 } = await download(ctx.api, id!, out);
    if (gone.aborted) return;
    const name = (item.path.split("/").pop() || "evidence").replace(/[^\w.-]/g, "_");
    res.writeHead(200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": size,
      "Content-Disposition": `attachment; filename="${item.hostname.replace(/[^\w.-]/g, "_")}-${name}"`,
      "X-Dragnet-Sha256": sha256,
      "Cache-Control": "no-store",
      "X-Content-Type-Options": "nosniff",
    });
    // Settles however the page goes away, so the copy below is always removed.
    await pipeline(createReadStream(out), res).catch(() => undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};

const ROUTES: [method: string, path: RegExp, handler: Handler][] = [
  [
    "GET",
    /^\/api\/me$/,
    async (ctx, _q, res) =>
      json(ctx, res, { name: ctx.api.key.name, keyId: ctx.api.key.keyId, coordinator: ctx.api.address }),
  ],
  ["GET", /^\/api\/forms$/, async (ctx, _q, res) => json(ctx, res, { forms: describeForms() })],
  [
    "GET",
    /^\/api\/agents$/,
    async (ctx, _q, res, url) =>
      json(ctx, res, {
        agents: (await ctx.api.listAgents(url.searchParams.get("target") ?? "")).map(agentView),
      }),
  ],
  [
    "POST",
    /^\/api\/preview$/,
    async (ctx, req, res) => {
      const body = await bodyOf(req);
      return json(
        ctx,
        res,
        await ctx.signer.preview({
          command: String(body.command),
          values: body.values as Record<string, unknown>,
        }),
      );
    },
  ],
  [
    "POST",
    /^\/api\/sign$/,
    async (ctx, req, res) => json(ctx, res, await ctx.signer.sign(text(await bodyOf(req), "preview", 64))),
  ],
  [
    "GET",
    /^\/api\/actions$/,
    async (ctx, _q, res, url) => {
      const pending = url.searchParams.get("pending") === "1";
      const actions = await ctx.api.listActions(pending ? 100 : 1000, pending);
      return json(ctx, res, { actions: actions.map(actionView) });
    },
  ],
  [
    "GET",
    /^\/api\/actions\/([\w-]{1,64})$/,
    async (ctx, _q, res, _u, [id]) => {
      const detail = await ctx.api.getAction(id!, true);
      const s = detail.summary!;
      return json(ctx, res, {
        action: actionView(s),
        agents: detail.results.map((r) => agentStateView(r, s)),
      });
    },
  ],
  ["GET", /^\/api\/actions\/([\w-]{1,64})\/live$/, liveAction],
  ["GET", /^\/api\/actions\/([\w-]{1,64})\/export$/, exportAction],
  [
    "GET",
    /^\/api\/actions\/([\w-]{1,64})\/review$/,
    async (ctx, _q, res, _u, [id]) => json(ctx, res, await ctx.signer.review(id!)),
  ],
  [
    "POST",
    /^\/api\/actions\/([\w-]{1,64})\/approve$/,
    async (ctx, req, res, _u, [id]) =>
      json(ctx, res, await ctx.signer.approve(id!, text(await bodyOf(req), "bodySha256", 64))),
  ],
  [
    "GET",
    /^\/api\/alerts$/,
    async (ctx, _q, res, url) => {
      const since = Number(url.searchParams.get("since") ?? 0) || Date.now() - 7 * 86_400_000;
      // Where the store stands before the past is read: the page follows from there, so that an
      // alert stored in between is not lost (see liveAlerts).
      const cursor = await ctx.api.alertsCursor();
      const alerts = await ctx.api.listAlerts(url.searchParams.get("target") ?? "", since, 500);
      return json(ctx, res, { alerts: alerts.map(alertView), cursor });
    },
  ],
  ["GET", /^\/api\/alerts\/live$/, liveAlerts],
  [
    "GET",
    /^\/api\/incidents$/,
    async (ctx, _q, res) =>
      json(ctx, res, {
        incidents: (await ctx.api.listIncidents(200)).map(incidentView),
        severities: SEVERITIES,
      }),
  ],
  [
    "POST",
    /^\/api\/incidents$/,
    async (ctx, req, res) => {
      const body = await bodyOf(req);
      const incident = await ctx.api.openIncident(text(body, "title", 200), text(body, "severity", 20));
      return json(ctx, res, { incident: incidentView(incident) });
    },
  ],
  [
    "GET",
    /^\/api\/incidents\/([\w-]{1,64})$/,
    async (ctx, _q, res, _u, [id]) => {
      const detail = await ctx.api.getIncident(id!);
      const evidence = await ctx.api.listEvidence(detail.incident!.id, 500);
      return json(ctx, res, {
        incident: incidentView(detail.incident!),
        pages: detail.pages.map(pageView),
        evidence: evidence.map(evidenceView),
        phases: PHASES,
      });
    },
  ],
  [
    "POST",
    /^\/api\/incidents\/([\w-]{1,64})\/notes$/,
    async (ctx, req, res, _u, [id]) => {
      const body = await bodyOf(req);
      const { page } = await addSignedNote(ctx.api, ctx.api.key, id!, text(body, "text", 64 * 1024));
      return json(ctx, res, { page: pageView(page) });
    },
  ],
  [
    "POST",
    /^\/api\/incidents\/([\w-]{1,64})\/phase$/,
    async (ctx, req, res, _u, [id]) => {
      const body = await bodyOf(req);
      const page = await ctx.api.changePhase(id!, text(body, "phase", 40), text(body, "note", 4096, false));
      return json(ctx, res, { page: pageView(page) });
    },
  ],
  [
    "POST",
    /^\/api\/incidents\/([\w-]{1,64})\/notify$/,
    async (ctx, req, res, _u, [id]) => {
      const body = await bodyOf(req);
      const r = await ctx.api.notify(id!, text(body, "to", 200), text(body, "message", 4096, false));
      return json(ctx, res, { page: pageView(r.page!), webhook: r.webhook });
    },
  ],
  [
    "GET",
    /^\/api\/incidents\/([\w-]{1,64})\/verify$/,
    async (ctx, _q, res, _u, [id]) => json(ctx, res, await ctx.api.verifyIncident(id!)),
  ],
  [
    "GET",
    /^\/api\/incidents\/([\w-]{1,64})\/report$/,
    async (ctx, _q, res, _u, [id]) =>
      // The report is one self-contained file: its own styles, no script at all.
      ctx.send(res, 200, await ctx.api.incidentReport(id!, "html"), "text/html; charset=utf-8", {
        "Content-Security-Policy":
          "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
      }),
  ],
  ["GET", /^\/api\/evidence\/([\w-]{1,64})\/file$/, evidenceFile],
  [
    "GET",
    /^\/api\/audit$/,
    async (ctx, _q, res, url) => {
      const [entries, chains] = await Promise.all([
        ctx.api.listAudit(
          Math.min(Number(url.searchParams.get("limit")) || 2000, 10_000),
          url.searchParams.get("action") ?? "",
        ),
        ctx.api.verifyAudit(),
      ]);
      return json(ctx, res, { entries: entries.map(auditView), chains });
    },
  ],
];

/** Answers an /api/ request; refusals are JSON `{error}` with the CLI's words. */
export async function route(
  ctx: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const refuse = (status: number, why: string) =>
    ctx.send(res, status, `${JSON.stringify({ error: why })}\n`, "application/json");
  let pathMatched = false;
  for (const [method, path, handler] of ROUTES) {
    const m = path.exec(url.pathname);
    if (!m) continue;
    pathMatched = true;
    if (method !== req.method) continue;
    try {
      await handler(ctx, req, res, url, m.slice(1));
    } catch (err) {
      if (res.headersSent) {
        res.end();
        return;
      }
      if (err instanceof HttpError) return refuse(err.status, err.message);
      const status = !DragnetError.is(err)
        ? 500
        : err.code === Codes.NOT_FOUND
          ? 404
          : err.code === Codes.UNAVAILABLE
            ? 502
            : 400;
      return refuse(status, describeError(err));
    }
    return;
  }
  return refuse(
    pathMatched ? 405 : 404,
    pathMatched ? `not with ${req.method}` : `no ${url.pathname.slice(0, 100)} here`,
  );
}
