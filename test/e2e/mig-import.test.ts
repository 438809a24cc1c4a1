import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dragnet, ndjson, ROOT, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// `dragnet action import` as an investigator runs it: a MIG action file shown,
// refused without a Dragnet target, then sent to a fleet and answered.

const FIXTURES = join(ROOT, "test", "fixtures", "mig-actions");
let fleet: TestFleet;
let home: string;

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 2 });
  home = fleet.consoleHome();
  await eventually(async () => ((await fleet.api.listAgents()).length === 2 ? true : undefined));
});

afterAll(async () => {
  await fleet?.stop();
});

describe("dragnet action import", () => {
  it("shows the conversion and MIG's target (not run) without sending anything", async () => {
    const shown = await dragnet(["--home", home, "action", "import", join(FIXTURES, "sshd_backdoor.json")]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^Verify SSHD signature against Backdoor:Linux\/SSHDoor\.A\n/);
    expect(shown.stdout).toMatch(
      /MIG target \(not run; give a Dragnet target with -t\): agents\.queueloc like 'linux\.%'/,
    );
    expect(shown.stdout).toMatch(
      /"sha256": \[\s*"ebfd9354ed83635ed38bd117b375903f9984a18780ef86dbf7a642fc6584271c"/,
    );
    expect((await fleet.api.listActions(100)).length).toBe(0);
  });

  it("refuses to submit without a Dragnet target, and refuses modules it cannot run", async () => {
    const noTarget = await dragnet([
      "--home",
      home,
      "action",
      "import",
      join(FIXTURES, "sshd_backdoor.json"),
      "--submit",
    ]);
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toMatch(
      /--submit needs a Dragnet target \(-t EXPR\)\. MIG target .*queueloc like 'linux\.%'/,
    );
    const partial = await dragnet([
      "--home",
      home,
      "action",
      "import",
      join(FIXTURES, "example_v2.json"),
      "-t",
      "all",
      "--submit",
    ]);
    expect(partial.code).toBe(2);
    expect(partial.stderr).toMatch(
      /operation 2 \(netstat\): netstat localip, localmac, neighborip have no Dragnet equivalent.*no Dragnet module: agentdestroy \(operation 3/,
    );
    expect((await fleet.api.listActions(100)).length).toBe(0);
  });

  it("submits an imported hash hunt: every agent answers with the file sha256sum names", async () => {
    const digest = execFileSync("sha256sum", ["/etc/passwd"], { encoding: "utf8" }).split(" ")[0]!;
    const file = join(fleet.dir, "passwd-hunt.json");
    writeFileSync(
      file,
      JSON.stringify({
        name: "passwd by hash",
        target: "agents.queueloc like 'linux.%'",
        threat: { level: "info", family: "test" },
        operations: [
          {
            module: "file",
            parameters: {
              searches: { passwd: { paths: ["/etc"], sha2: [digest], options: { maxdepth: 0 } } },
            },
          },
        ],
        syntaxversion: 2,
      }),
    );
    const sent = await dragnet(["--home", home, "--json", "action", "import", file, "-t", "all", "--submit"]);
    expect(sent.code).toBe(0);
    const rows = ndjson(sent.stdout);
    expect(rows.map((r) => [r.path, r.sha256, r.search])).toEqual([
      ["/etc/passwd", digest, "passwd"],
      ["/etc/passwd", digest, "passwd"],
    ]);
    const [action] = await fleet.api.listActions(100);
    expect(action!.name).toBe("passwd by hash");
  });
});
