import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { ROOT } from "./cli.js";

// The web console in tests: the real `dragnet ui` process, and Debian's
// chromium driven by playwright-core (Playwright's own browser download does
// not work here). Screenshots go to test-output/ for a person to look at.

export const SHOTS = join(ROOT, "test-output");

export interface UiProcess {
  /** The one-time link it printed. */
  url: string;
  /** The server's origin (http://127.0.0.1:PORT). */
  origin: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `dragnet [globals] ui --no-open` and waits for its link. */
export async function startUi(globals: string[]): Promise<UiProcess> {
  const child = spawn(process.execPath, [join(ROOT, "bin", "dragnet.js"), ...globals, "ui", "--no-open"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => {
    err += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    child.once("exit", (code) => reject(new Error(`dragnet ui exited ${code}: ${err}`)));
  });
  return {
    url,
    origin: new URL(url).origin,
    process: child,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

export function launchChromium(): Promise<Browser> {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
}

/** A browser context signed in with the link, and the page errors it met (a refused request is not one). */
export async function openUi(
  browser: Browser,
  ui: UiProcess,
): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(ui.url);
  return { context, page, problems };
}

/** The rows of a table as text, by header (virtualised tables: the rows drawn). */
export async function tableRows(page: Page, selector: string): Promise<Array<Record<string, string>>> {
  interface Node {
    textContent: string | null;
    querySelectorAll(s: string): Iterable<Node>;
  }
  return page.$$eval(selector, (found) => {
    const table = found[0] as unknown as Node;
    const headers = [...table.querySelectorAll("thead th")].map((th) =>
      (th.textContent ?? "").replace(/[▲▼]/g, "").trim(),
    );
    return [...table.querySelectorAll("tbody tr:not(.spacer)")].map((tr) =>
      Object.fromEntries(
        [...tr.querySelectorAll("td")].map((td, i) => [headers[i], (td.textContent ?? "").trim()]),
      ),
    );
  });
}

/** Starts counting the page's main-thread tasks over 50 ms, as the browser reports them. */
export async function watchLongTasks(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = globalThis as unknown as {
      longTasks: number[];
      PerformanceObserver: new (
        cb: (list: { getEntries(): { duration: number }[] }) => void,
      ) => { observe(o: { type: string }): void };
    };
    w.longTasks = [];
    new w.PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.longTasks.push(e.duration);
    }).observe({ type: "longtask" });
  });
}

/** The long tasks' durations since watchLongTasks, in ms. */
export function longTasks(page: Page): Promise<number[]> {
  return page.evaluate(() => (globalThis as unknown as { longTasks: number[] }).longTasks);
}

/** How many rows the action page says it has. */
export async function rowCount(page: Page): Promise<number> {
  return Number(((await page.textContent("#row-count")) ?? "").replace(/,/g, "").match(/^\d+/)?.[0] ?? 0);
}
