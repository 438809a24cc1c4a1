import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describeError } from "../../common/mod.js";
import type { CoordinatorApi } from "../client.js";
import { type GlobalOptions, loadConsoleKeyring } from "../home.js";
import { consoleModules } from "../modules/modules.gen.js";
import { ResultRows } from "../output/formatters.js";
import { peerUid } from "./peer.js";
import { type RouteContext, route } from "./routes.js";
import { Signer } from "./signing.js";

// `dragnet ui`'s web server: on loopback only, inside the console process, with
// the console's own coordinator connection and key (the browser never gets a
// key). Node's own http module (maintained with the runtime itself): a few
// dozen routes on 127.0.0.1, one user, no middleware — a framework would add
// dependencies and nothing this server needs.
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

export async function startUiServer(
  api: CoordinatorApi,
  globals: GlobalOptions,
  port = 0,
  /** Called when the link is used (the session starts): the terminal says so. */
  onSession?: () => void,
): Promise<UiServer> {
  let token: string | undefined = randomBytes(24).toString("hex");
  const session = randomBytes(32).toString("hex");
  let origins: string[] = [];
  let hosts: string[] = [];

  const send = (res: ServerResponse, status: number, body: string | Buffer, type: string, extra = {}) => {
    res.writeHead(status, {
      "Content-Type": type,
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": "no-store",
      ...extra,
    });
    res.end(body);
  };
  // The keyring is read for each signing: an edit to it counts at once.
  const ctx: RouteContext = {
    api,
    signer: new Signer(api, globals, () => loadConsoleKeyring(globals)),
    rows: new ResultRows(consoleModules),
    send,
  };
  const refuse = (res: ServerResponse, status: number, why: string) =>
    send(res, status, `${JSON.stringify({ error: why })}\n`, "application/json");

  // Whose connection: checked once per connection (keep-alive carries many requests).
  const owners = new WeakMap<Socket, boolean>();
  const fromThisUser = (socket: Socket): boolean => {
    let mine = owners.get(socket);
    if (mine === undefined) {
      mine = process.platform !== "linux" || peerUid(socket) === process.getuid?.();
      owners.set(socket, mine);
    }
    return mine;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    // Another user on this machine may hold the cookie (browsers share it across
    // 127.0.0.1's ports) or the link (a browser's command line): not the key.
    if (!fromThisUser(req.socket)) return refuse(res, 403, "only the user who started dragnet ui may use it");
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
      onSession?.();
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
    if (url.pathname.startsWith("/api/")) return route(ctx, req, res, url);
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
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // Live streams never end by themselves.
        server.closeAllConnections();
      }),
  };
}
