import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LabState } from "../../console/lab/lab.js";
import { dragnet, ndjson, requireBuild, twoPeople } from "../helpers/cli.js";
import { tempDir } from "../helpers/fleet.js";

// The response rehearsal a team runs on `dragnet lab up --netns`: each agent
// in its own network namespace (198.18.0.0/24, no default route), so
// isolating one cuts off only that namespace. Two investigators isolate
// lab-01, it stops reaching lab-02 but still answers, then it is released.

function whyNot(): string | undefined {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const cmd of ["ip", "nft", "ping"]) {
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0)
      return `${cmd} is not installed (.ci/run installs it)`;
  }
  return undefined;
}
const skip = whyNot();
if (skip) console.warn(`lab --netns tests skipped: ${skip}`);

let home: string;
let lab: LabState;
const cli = (args: string[]) => dragnet(["--home", home, ...args]);
const ping = (fromNs: string, to: string) =>
  spawnSync("ip", ["netns", "exec", fromNs, "ping", "-c", "1", "-W", "1", to]).status === 0;

describe.skipIf(skip !== undefined)("lab up --netns", () => {
  beforeAll(async () => {
    requireBuild();
    home = tempDir("dragnet-lab-netns-");
    const up = await cli(["lab", "up", "--agents", "2", "--netns"]);
    expect([up.code, up.stderr]).toEqual([0, expect.stringMatching(/2 agents online/)]);
    lab = JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState;
  }, 90_000);

  afterAll(async () => {
    if (lab?.running) await cli(["lab", "down"]);
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
  });

  it("lab down removes the namespaces and the bridge", async () => {
    const down = await cli(["lab", "down"]);
    expect(down.code).toBe(0);
    lab.running = false;
    expect(spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout).not.toMatch(/dragnet-lab-0/);
    expect(spawnSync("ip", ["link", "show", "dragnetlab0"]).status).not.toBe(0);
  });
});
