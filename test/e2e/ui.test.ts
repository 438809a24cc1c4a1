import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { MemoryParams } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { ROOT, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// `dragnet ui` in a real browser (Debian's chromium through playwright-core)
// against a fleet of three agents: who may talk to the server, and what the
// fleet page shows. Screenshots go to test-output/ for a person to look at.

let fleet: TestFleet;
let ui: ChildProcess;
let url: string;
let browser: Browser;
const SHOTS = join(ROOT, "test-output");

/** A raw request, so that Host and Origin can be anything. */
function raw(
  path: string,
  headers: Record<string, string>,
  method = "GET",
): Promise<{ status: number; body: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      let body = "";
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  requireBuild();
  mkdirSync(SHOTS, { recursive: true });
  fleet = await startFleet({ agents: 3 });
  const home = fleet.consoleHome();
  ui = spawn(process.execPath, [join(ROOT, "bin", "dragnet.js"), "--home", home, "ui", "--no-open"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  url = await new Promise<string>((resolve, reject) => {
    let out = "";
    ui.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    ui.once("exit", (code) => reject(new Error(`dragnet ui exited ${code}`)));
  });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  ui?.kill("SIGTERM");
  await fleet?.stop();
});

describe("dragnet ui", () => {
  it("listens on loopback and refuses requests without its cookie, naming another host, or changing from another origin", async () => {
    expect(new URL(url).hostname).toBe("127.0.0.1");
    const { port } = new URL(url);
    expect((await raw("/", { Host: `127.0.0.1:${port}` })).status).toBe(401);
    expect((await raw("/api/agents", { Host: `127.0.0.1:${port}` })).status).toBe(401);
    // DNS rebinding: a name that resolves here is still not this server's name.
    expect((await raw("/", { Host: `attacker.example:${port}` })).status).toBe(421);
    // A page elsewhere posting here.
    const post = await raw(
      "/api/agents",
      { Host: `127.0.0.1:${port}`, Origin: "http://attacker.example" },
      "POST",
    );
    expect([post.status, post.body]).toEqual([
      403,
      expect.stringContaining("must come from this console's own page"),
    ]);
  });

  it("opens with the one-time link, and shows the fleet at a glance, filtered by a target checked as typed", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on("console", (m) => {
      // Refused requests (the spent link, a typo's 400) are answers, not faults of the page.
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
    });
    page.on("pageerror", (e) => problems.push(e.message));
    const started = Date.now();
    await page.goto(url);
    await page.waitForSelector("#agents tbody tr");
    const firstPaintMs = Date.now() - started;
    await eventually(async () => ((await page.locator("#agents tbody tr").count()) === 3 ? true : undefined));
    const hosts = await page.$$eval("#agents tbody tr td:first-child", (tds) =>
      tds.map((t) => t.textContent),
    );
    expect(hosts.sort()).toEqual(fleet.agents.map((_, i) => `host-${i + 1}`).sort());
    expect(await page.textContent(".counts")).toMatch(/3 agents:\s*3 online/);
    // The cookie is HttpOnly and strict; the token in the link is spent.
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: "dragnet_ui", httpOnly: true, sameSite: "Strict" });
    expect((await (await context.newPage()).goto(url))!.status()).toBe(401);
    await page.screenshot({ path: join(SHOTS, "ui-fleet.png"), fullPage: true });
    // A target narrows the table; a typo is shown with where it is.
    await page.fill("#target", 'hostname == "host-2"');
    await eventually(async () => ((await page.locator("#agents tbody tr").count()) === 1 ? true : undefined));
    await page.fill("#target", "hostname ==");
    await page.waitForSelector(".error");
    expect(await page.textContent(".error")).toMatch(/position/);
    await page.screenshot({ path: join(SHOTS, "ui-fleet-target-error.png"), fullPage: true });
    expect(problems).toEqual([]);
    process.stderr.write(`ui: first rows painted ${firstPaintMs} ms after opening the link\n`);

    // Actions and approvals: a sweep alice ran, and a memory search that waits for a second signature.
    const sweep = fileAction({ paths: ["/etc/hostname"] }, { name: "hostname sweep" });
    await fleet.api.submitAction(signAction(sweep, fleet.alice));
    await collectResults(fleet.api, sweep.id);
    const held = fileAction({ paths: ["/etc/hostname"] }, { name: "memory hunt" });
    held.operations = [
      {
        module: {
          $case: "memory",
          value: MemoryParams.fromPartial({ string: "beacon", processes: { name: "^sshd$" } }),
        },
      },
    ];
    expect((await fleet.api.submitAction(signAction(held, fleet.alice))).pendingApproval).toBe(true);
    await page.click("#nav-approvals");
    await eventually(async () =>
      (await page.locator("#actions tbody tr").count()) === 1 ? true : undefined,
    );
    expect(await page.textContent("#actions tbody")).toMatch(
      /memory hunt.*memory.*alice \(1 of 2\).*pending approval/,
    );
    await page.screenshot({ path: join(SHOTS, "ui-approvals.png"), fullPage: true });
    await page.click("#nav-actions");
    await eventually(async () =>
      (await page.locator("#actions tbody tr").count()) === 2 ? true : undefined,
    );
    await page.fill("#search", "hostname complete");
    await eventually(async () =>
      (await page.locator("#actions tbody tr").count()) === 1 ? true : undefined,
    );
    expect(await page.textContent("#actions tbody")).toMatch(/hostname sweep.*file.*alice.*complete\s*3\s*3/);
    await page.fill("#search", "");
    await page.screenshot({ path: join(SHOTS, "ui-actions.png"), fullPage: true });
    // Keyboard: the tabs are buttons, reached and pressed without a mouse.
    await page.focus("#nav-fleet");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#agents");
    expect(problems).toEqual([]);
    await context.close();
  });
});
