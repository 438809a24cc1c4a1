import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabState } from "../../console/lab/lab.js";
import { dragnet, ndjson, netnsUnavailable, pingFrom, requireBuild, twoPeople } from "../helpers/cli.js";
import { eventually, tempDir } from "../helpers/fleet.js";
import { launchChromium, openUi, SHOTS, startUi, tableRows, type UiProcess } from "../helpers/ui.js";

// The response rehearsal a team runs on `dragnet lab up --netns`: each agent
// in its own network namespace (198.18.0.0/24, no default route), so
// isolating one cuts off only that namespace. Two investigators isolate
// lab-01, it stops reaching lab-02 but still answers, then it is released —
// from the CLI, then from two browsers (each investigator's own `dragnet ui`
// and key), where alice also collects evidence that bob approves. And the
// hunt: an implant planted on lab-01 alone (an unowned systemd unit, an
// account with an unknown authorized key — in the files `ip netns exec` lays
// over /etc for that agent only) is found on exactly that host, from one
// command each; `ping` from inside checks the isolation.

const skip = netnsUnavailable();
if (skip) console.warn(`lab --netns tests skipped: ${skip}`);

let home: string;
let lab: LabState;
let alice: UiProcess;
let bob: UiProcess;
let browser: Browser;
const cli = (args: string[]) => dragnet(["--home", home, ...args]);
const ping = pingFrom;

/** `ip netns exec dragnet-lab-01` binds what is here over /etc: lab-01's own files. */
const LAB01_ETC = "/etc/netns/dragnet-lab-01";
const IMPLANT_UNIT = "dragnet-lab-implant.service";
let plantedKey: string;

/** An enabled systemd unit no package owns, and an account whose authorized_keys holds a key no one issued. */
function plantOnLab01(): void {
  rmSync(LAB01_ETC, { recursive: true, force: true });
  mkdirSync(LAB01_ETC, { recursive: true });
  cpSync("/etc/systemd", join(LAB01_ETC, "systemd"), { recursive: true, verbatimSymlinks: true });
  const system = join(LAB01_ETC, "systemd/system");
  writeFileSync(
    join(system, IMPLANT_UNIT),
    "[Unit]\nDescription=Cache helper\n\n[Service]\nExecStart=/usr/local/lib/.cache-helper --beacon 198.18.0.99\n\n[Install]\nWantedBy=multi-user.target\n",
  );
  mkdirSync(join(system, "multi-user.target.wants"), { recursive: true });
  symlinkSync(`/etc/systemd/system/${IMPLANT_UNIT}`, join(system, "multi-user.target.wants", IMPLANT_UNIT));
  const homeDir = tempDir("dragnet-lab-svc-home-");
  mkdirSync(join(homeDir, ".ssh"));
  const key = join(tempDir("dragnet-lab-key-"), "id");
  spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "ops@203.0.113.50", "-f", key]);
  writeFileSync(join(homeDir, ".ssh/authorized_keys"), readFileSync(`${key}.pub`));
  plantedKey = spawnSync("ssh-keygen", ["-lf", `${key}.pub`], { encoding: "utf8" }).stdout.split(" ")[1]!;
  writeFileSync(
    join(LAB01_ETC, "passwd"),
    `${readFileSync("/etc/passwd", "utf8")}svc-sync:x:0:0:sync:${homeDir}:/bin/sh\n`,
  );
}

describe.skipIf(skip !== undefined)("lab up --netns", () => {
  beforeAll(async () => {
    requireBuild();
    home = tempDir("dragnet-lab-netns-");
    plantOnLab01();
    const up = await cli(["lab", "up", "--agents", "2", "--netns"]);
    expect([up.code, up.stderr]).toEqual([0, expect.stringMatching(/2 agents online/)]);
    lab = JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState;
    // Two investigators' web consoles, each with its own key.
    alice = await startUi(["--home", home]);
    bob = await startUi(["--home", home, "--key", join(home, "bob.key")]);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await alice?.stop();
    await bob?.stop();
    if (lab?.running) await cli(["lab", "down"]);
    rmSync(LAB01_ETC, { recursive: true, force: true });
  });

  it("records each agent's namespace and address; agents reach each other and nothing else", () => {
    expect(lab.agents.map((a) => [a.hostname, a.namespace, a.address])).toEqual([
      ["lab-01", "dragnet-lab-01", "198.18.0.11"],
      ["lab-02", "dragnet-lab-02", "198.18.0.12"],
    ]);
    expect(lab.nats.url).toMatch(/^nats:\/\/198\.18\.0\.1:\d+$/);
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(true);
    const routes = spawnSync("ip", ["-n", "dragnet-lab-01", "route"], { encoding: "utf8" }).stdout;
    expect(routes).not.toMatch(/default/);
  });

  it("isolates lab-01 with two signatures: cut off from lab-02, still answering; then released", async () => {
    const isolated = await twoPeople(home, ["isolate", "-t", 'hostname == "lab-01"']);
    expect(isolated.code).toBe(0);
    expect(isolated.rows.map((r) => [r.isolated, r.method])).toEqual([["yes", "nftables"]]);
    expect(String(isolated.rows[0]!.snapshot)).toMatch(/^\d+ processes, \d+ sockets/);
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(false);
    expect(ping("dragnet-lab-02", "198.18.0.11")).toBe(false);
    // The same, asked of the agents: isolated lab-01 cannot reach its peer; the peer cannot reach it.
    const probe = async () => {
      const rows = [];
      for (const host of ["198.18.0.11", "198.18.0.12"]) {
        const args = ["--json", "ping", "-t", "all", "--host", host, "--count", "2", "--probe-timeout", "1s"];
        rows.push(...ndjson((await cli(args)).stdout));
      }
      return rows.map((r) => [(r.agent as { hostname: string }).hostname, r.address, r.state]).sort();
    };
    expect(await probe()).toEqual([
      ["lab-01", "198.18.0.11", "reachable"],
      ["lab-01", "198.18.0.12", "unreachable"],
      ["lab-02", "198.18.0.11", "unreachable"],
      ["lab-02", "198.18.0.12", "reachable"],
    ]);
    const agents = await cli(["--json", "agents", "-t", "isolated"]);
    expect(ndjson(agents.stdout).map((a) => a.hostname)).toEqual(["lab-01"]);
    const answers = await cli([
      "--json",
      "process",
      "-t",
      'hostname == "lab-01"',
      "--pid",
      String(lab.agents[0]!.pid),
    ]);
    expect(ndjson(answers.stdout).map((r) => r.name)).toEqual(["dragnet-agent"]);
    const released = await twoPeople(home, ["unisolate", "-t", 'hostname == "lab-01"']);
    expect(released.rows.map((r) => [r.isolated, r.removed])).toEqual([["no", true]]);
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(true);
    expect((await probe()).map((r) => r[2])).toEqual(["reachable", "reachable", "reachable", "reachable"]);
  });

  it("finds the unowned systemd unit and the unknown authorized key on exactly the host they were planted on", async () => {
    const units = await cli(["--json", "persistence", "-t", "all", "--unowned", "--kind", "systemd"]);
    expect(units.code).toBe(0);
    const implants = ndjson(units.stdout).filter((r) => r.name === IMPLANT_UNIT);
    expect(
      implants.map((r) => [(r.agent as { hostname: string }).hostname, r.state, r.command, r.owner]),
    ).toEqual([["lab-01", "enabled", "/usr/local/lib/.cache-helper --beacon 198.18.0.99", "UNOWNED"]]);
    // Everything else unowned under systemd is the same on both hosts: the implant is the odd one out.
    const rest = ndjson(units.stdout).filter((r) => r.name !== IMPLANT_UNIT);
    const on = (host: string) =>
      rest
        .filter((r) => (r.agent as { hostname: string }).hostname === host)
        .map((r) => r.path)
        .sort();
    expect(on("lab-01")).toEqual(on("lab-02"));

    const keys = await cli(["--json", "sshkey", "-t", "all", "--fingerprint", plantedKey]);
    expect(keys.code).toBe(0);
    expect(
      ndjson(keys.stdout).map((r) => [(r.agent as { hostname: string }).hostname, r.user, r.type, r.comment]),
    ).toEqual([["lab-01", "svc-sync", "ssh-ed25519", "ops@203.0.113.50"]]);
  });

  it("alice submits an isolate in her browser, bob approves it in his, and lab-01 is cut off from lab-02", async () => {
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(true);
    const a = await openUi(browser, alice);
    const b = await openUi(browser, bob);
    expect(await b.page.textContent(".me")).toBe("signing as bob");

    // Alice: the isolate form, previewed — one agent, and a second investigator needed.
    await a.page.click("#nav-respond");
    await a.page.click("#form-isolate");
    await a.page.fill("#f-isolate-target", 'hostname == "lab-01"');
    await a.page.waitForSelector("#target-preview");
    expect(await a.page.textContent("#target-preview")).toMatch(/matches 1 agent now: lab-01/);
    await a.page.fill("#f-isolate-release-after", "2h");
    await a.page.fill("#f-isolate-description", "beaconing to 203.0.113.7");
    await a.page.click("#preview");
    await a.page.waitForSelector("#sign");
    const preview = (await a.page.textContent(".confirm"))!;
    expect(preview).toMatch(/Runs on\s*1 agent:\s*lab-01/);
    expect(preview).toContain('"releaseAfterSeconds":7200');
    expect(preview).toContain("beaconing to 203.0.113.7");
    expect(preview).toMatch(/isolate needs signatures of weight 2; yours carries 1/);
    await a.page.screenshot({ path: join(SHOTS, "ui-respond-preview.png"), fullPage: true });
    await a.page.click("#sign");
    await a.page.waitForSelector("#signed-pending");
    const id = /action (\S+) waits/.exec((await a.page.textContent("#signed-pending"))!)![1]!;
    // Nothing ran yet.
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(true);

    // Bob: the approvals tab shows it; the review decodes what was signed.
    await b.page.click("#nav-approvals");
    await eventually(async () => ((await tableRows(b.page, "#actions")).length === 1 ? true : undefined));
    expect((await tableRows(b.page, "#actions"))[0]).toMatchObject({
      modules: "isolate",
      "signed by": "alice (1 of 2)",
      state: "pending approval",
    });
    await b.page.click("#actions tbody tr");
    await b.page.waitForSelector("#approve");
    expect(await b.page.textContent("#signers")).toMatch(/^alice \(/);
    const review = (await b.page.textContent(".confirm"))!;
    expect(review).toMatch(/Runs on\s*1 agent:\s*lab-01/);
    expect(review).toContain('"releaseAfterSeconds":7200');
    expect(review).toMatch(/signed with weight 1 of the 2 that isolate needs/);
    await b.page.screenshot({ path: join(SHOTS, "ui-approve.png"), fullPage: true });
    await b.page.click("#approve");
    await b.page.waitForURL(new RegExp(`#/action/${id}$`));
    await eventually(
      async () => ((await b.page.textContent("h1 .badge")) === "complete" ? true : undefined),
      30_000,
    );
    await eventually(async () => ((await tableRows(b.page, "#results")).length === 1 ? true : undefined));
    const [row] = await tableRows(b.page, "#results");
    expect([row!.hostname, row!.isolated, row!.method]).toEqual(["lab-01", "yes", "nftables"]);
    await b.page.screenshot({ path: join(SHOTS, "ui-isolated-action.png"), fullPage: true });
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(false);

    // Alice's fleet page: lab-01 isolated, and since when.
    await a.page.click("#nav-fleet");
    await eventually(async () => {
      const rows = await tableRows(a.page, "#agents");
      const lab01 = rows.find((r) => r.host === "lab-01");
      return lab01?.isolation.startsWith("isolated since 20") ? lab01 : undefined;
    }, 20_000);
    expect(await a.page.textContent(".counts")).toMatch(/1 isolated/);
    await a.page.screenshot({ path: join(SHOTS, "ui-fleet-isolated.png"), fullPage: true });
    expect([...a.problems, ...b.problems]).toEqual([]);

    // Evidence: alice collects a file for an incident from her browser, bob approves, and the
    // download is the file's bytes, its SHA-256 checked against the agent's before they are sent.
    const incident = (
      await cli(["incident", "open", "--title", "lab-01 beaconing", "--severity", "high"])
    ).stdout.trim();
    await a.page.click("#nav-respond");
    await a.page.click("#form-collect");
    await a.page.fill("#f-collect-target", 'hostname == "lab-02"');
    await a.page.fill("#f-collect-path", "/usr/lib/os-release");
    await a.page.fill("#f-collect-incident", incident);
    await a.page.click("#preview");
    await a.page.waitForSelector("#sign");
    expect(await a.page.textContent(".confirm")).toContain(incident);
    await a.page.click("#sign");
    await a.page.waitForSelector("#signed-pending");
    const collectId = /action (\S+) waits/.exec((await a.page.textContent("#signed-pending"))!)![1]!;
    await b.page.goto(`${bob.origin}/#/approve/${collectId}`);
    await b.page.click("#approve");
    await eventually(
      async () => ((await b.page.textContent("h1 .badge")) === "complete" ? true : undefined),
      30_000,
    );
    await a.page.goto(`${alice.origin}/#/incident/${incident}`);
    await eventually(
      async () => ((await tableRows(a.page, "#evidence")).length === 1 ? true : undefined),
      20_000,
    );
    const [item] = await tableRows(a.page, "#evidence");
    const sum = spawnSync("sha256sum", ["/usr/lib/os-release"], { encoding: "utf8" }).stdout.split(" ")[0]!;
    expect([item!.host, item!.path, item!.sha256]).toEqual(["lab-02", "/usr/lib/os-release", sum]);
    const [download] = await Promise.all([a.page.waitForEvent("download"), a.page.click("#evidence a")]);
    expect(readFileSync((await download.path())!)).toEqual(readFileSync("/usr/lib/os-release"));
    await a.page.screenshot({ path: join(SHOTS, "ui-incident-evidence.png"), fullPage: true });

    // Released (by the CLI: the same two people), the peer is reachable again.
    const released = await twoPeople(home, ["unisolate", "-t", 'hostname == "lab-01"']);
    expect(released.rows.map((r) => r.isolated)).toEqual(["no"]);
    expect(ping("dragnet-lab-01", "198.18.0.12")).toBe(true);
    expect(ndjson((await cli(["--json", "agents", "-t", "isolated"])).stdout)).toEqual([]);
  }, 120_000);

  it("lab down removes the namespaces and the bridge", async () => {
    const down = await cli(["lab", "down"]);
    expect(down.code).toBe(0);
    lab.running = false;
    expect(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout).not.toMatch(/dragnet-lab-0/);
    expect(spawnSync("ip", ["link", "show", "dragnetlab0"]).status).not.toBe(0);
  });
});
