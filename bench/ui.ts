// npm run bench:ui -- --agents N
//
// The web console, as an investigator meets it: `dragnet ui` started (time
// to its link), the page opened in Debian's chromium (time to the fleet's
// rows painted), the page's weight (script and stylesheet, gzipped), and a
// sweep of N simulated agents (simulator.ts, one file row each) signed from
// the form: time from the click on "Sign" to the N-th row in the table, and
// the main thread's long tasks meanwhile. The last line printed is one JSON object.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { ROOT } from "../test/helpers/cli.js";
import { eventually, startFleet } from "../test/helpers/fleet.js";
import { launchChromium, longTasks, rowCount, startUi, watchLongTasks } from "../test/helpers/ui.js";
import { startSimulator } from "./harness.js";

const { values } = parseArgs({ options: { agents: { type: "string", default: "10000" } } });
const n = Number(values.agents);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");

const gz = (file: string) => gzipSync(readFileSync(join(ROOT, "dist", "ui", file))).length;
const fleet = await startFleet({ heartbeatIntervalMs: 10_000 });
const sim = await startSimulator(fleet, {
  agents: n,
  heartbeatIntervalMs: 10_000,
  answer: true,
  withRows: true,
});
const browser = await launchChromium();
let ui: Awaited<ReturnType<typeof startUi>> | undefined;
try {
  const started = Date.now();
  ui = await startUi(["--home", fleet.consoleHome()]);
  const linkMs = Date.now() - started;
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const opened = Date.now();
  await page.goto(ui.url);
  await page.waitForSelector("#agents tbody tr");
  const firstPaintMs = Date.now() - opened;

  await page.click("#nav-sweep");
  await page.fill("#f-file-target", 'tags.sim == "true"');
  await page.fill("#f-file-path", "/usr/sbin/sshd");
  await page.fill("#f-file-hash", "sha256");
  await page.click("#preview");
  await page.waitForSelector("#sign");
  await watchLongTasks(page);
  const signed = Date.now();
  await page.click("#sign");
  await page.waitForURL(/#\/action\//);
  // When the coordinator had stored every answer (what bench:ingest measures), for comparison.
  const id = decodeURIComponent(page.url().split("#/action/")[1]!);
  let storedMs = 0;
  const stored = eventually(async () => {
    const c = (await fleet.api.getAction(id, false)).summary!.counts!;
    if (c.success === n) storedMs = Date.now() - signed;
    return c.success === n ? true : undefined;
  }, 300_000);
  await eventually(async () => ((await rowCount(page)) === n ? true : undefined), 300_000);
  const rowsMs = Date.now() - signed;
  await stored;
  // Stacked: the one agent in 100 with another hash comes first.
  const stackStarted = Date.now();
  await page.click("#stack");
  await page.waitForSelector("#stacks tbody tr");
  const stackMs = Date.now() - stackStarted;
  const tasks = await longTasks(page);
  console.log(
    JSON.stringify({
      bench: "ui",
      agents: n,
      link_ms: linkMs,
      first_paint_ms: firstPaintMs,
      script_gz_bytes: gz("app.js"),
      css_gz_bytes: gz("app.css"),
      rows: n,
      sign_to_last_row_ms: rowsMs,
      sign_to_all_stored_ms: storedMs,
      stack_ms: stackMs,
      long_tasks: tasks.length,
      longest_task_ms: Math.round(Math.max(0, ...tasks)),
    }),
  );
} finally {
  await browser.close();
  await ui?.stop();
  sim.kill("SIGTERM");
  await fleet.stop();
}
