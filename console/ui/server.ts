import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DragnetError, describeError } from "../../common/mod.js";
import type { ActionSummary, AgentInfo } from "../../proto/api.js";
import type { CoordinatorApi } from "../client.js";
import { actionStateWord } from "../commands/action.js";
import { agentProblems, statusName } from "../commands/agents.js";

// `dragnet ui`'s web server: on loopback only, inside the console process, with
// the console's own coordinator connection and key (the browser never gets a
// key). Node's own http module: a handful of routes on 127.0.0.1 need no more.
//
// Who may talk to it: the browser that opened the URL it printed. The URL's
// one-time token is exchanged for an HttpOnly, SameSite=Strict session cookie;
// a request without that cookie, or naming another Host (DNS rebinding), is
// refused, and so is a state-changing request from another Origin. The page's
// Content-Security-Policy allows nothing but this server.

const COOKIE = "dragnet_ui";
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join("; ");

/** The page's assets, built by scripts/build.mjs next to the console bundle (dist/ui/). */
function asset(name: string): Buffer {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [join(here, "ui"), join(here, "..", "..", "dist", "ui")]) {
    try {
      return readFileSync(join(dir, name));
    } catch {
      // not this one
    }
  }
  throw new Error(`the web console's ${name} is not built: run npm run build`);
}

const INDEX = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Dragnet</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/app.css"></head>
<body><div id="app"></div><script type="module" src="/app.js"></script></body></html>
`;

export interface UiServer {
  /** What to open: carries the one-time token. */
  url: string;
  port: number;
  close(): Promise<void>;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieOf(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [k, v] = part.trim().split("=");
    if (k === COOKIE) return v;
  }
  return undefined;
}

/** An agent as the page shows it: the CLI's words for status and problems. */
function agentJson(a: AgentInfo) {
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
    lastSeenMs: a.lastSeenMs,
    upgrade: a.upgradeState ? `${a.upgradeVersion} ${a.upgradeState}` : "",
    problems: agentProblems(a),
  };
}

/** An action as the history and approvals pages show it: the CLI's words for its state. */
function actionJson(a: ActionSummary) {
  const c = a.counts;
  return {
    id: a.id,
    name: a.name,
    target: a.target,
    modules: a.modules,
    signers: a.signerNames,
    state: actionStateWord(a),
    submittedAtMs: Number(a.submittedAtMs),
    expiresAtMs: Number(a.expiresAtMs),
    incidentId: a.incidentId,
    weight: a.weight,
    requiredWeight: a.requiredWeight,
    targeted: c?.targeted ?? 0,
    answered: (c?.success ?? 0) + (c?.failed ?? 0),
    found: c?.found ?? 0,
    failed: (c?.failed ?? 0) + (c?.rejected ?? 0) + (c?.timeout ?? 0),
  };
}

export async function startUiServer(api: CoordinatorApi, port = 0): Promise<UiServer> {
  let token: string | undefined = randomBytes(24).toString("hex");
  const session = randomBytes(32).toString("hex");
  let origins: string[] = [];
  let hosts: string[] = [];

  const send = (res: ServerResponse, status: number, body: string | Buffer, type: string) => {
    res.writeHead(status, {
      "Content-Type": type,
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": "no-store",
    });
    res.end(body);
  };
  const refuse = (res: ServerResponse, status: number, why: string) =>
    send(res, status, `${JSON.stringify({ error: why })}\n`, "application/json");

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    // DNS rebinding: a page on another name that resolves here still says its own name.
    if (!hosts.includes(req.headers.host ?? ""))
      return refuse(res, 421, "this server answers only to its loopback address");
    const url = new URL(req.url ?? "/", `http://${req.headers.host}`);
    if (
      req.method !== "GET" &&
      req.method !== "HEAD" &&
      !origins.includes(String(req.headers.origin ?? ""))
    ) {
      return refuse(res, 403, "a change must come from this console's own page");
    }
    // The one-time token: exchanged for the session cookie, then spent.
    const offered = url.searchParams.get("token");
    if (url.pathname === "/" && offered !== null) {
      if (!token || !same(offered, token))
        return refuse(res, 401, "this link was used already or is wrong: run dragnet ui again");
      token = undefined;
      res.writeHead(303, {
        Location: "/",
        "Set-Cookie": `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`,
        "Cache-Control": "no-store",
      });
      return res.end();
    }
    const cookie = cookieOf(req);
    if (!cookie || !same(cookie, session)) return refuse(res, 401, "open the link dragnet ui printed");
    if (url.pathname === "/") return send(res, 200, INDEX, "text/html; charset=utf-8");
    if (url.pathname === "/app.js") return send(res, 200, asset("app.js"), "text/javascript; charset=utf-8");
    if (url.pathname === "/app.css") return send(res, 200, asset("app.css"), "text/css; charset=utf-8");
    if (url.pathname === "/api/agents") {
      try {
        const agents = await api.listAgents(url.searchParams.get("target") ?? "");
        return send(res, 200, JSON.stringify({ agents: agents.map(agentJson) }), "application/json");
      } catch (err) {
        return refuse(res, DragnetError.is(err) ? 400 : 502, describeError(err));
      }
    }
    if (url.pathname === "/api/actions") {
      const pending = url.searchParams.get("pending") === "1";
      const actions = await api.listActions(pending ? 100 : 500, pending);
      return send(res, 200, JSON.stringify({ actions: actions.map(actionJson) }), "application/json");
    }
    return refuse(res, 404, `no ${url.pathname.slice(0, 100)} here`);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => refuse(res, 500, describeError(err)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  const bound = (server.address() as AddressInfo).port;
  hosts = [`127.0.0.1:${bound}`, `localhost:${bound}`];
  origins = hosts.map((h) => `http://${h}`);
  return {
    url: `http://127.0.0.1:${bound}/?token=${token}`,
    port: bound,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
