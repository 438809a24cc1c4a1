import { chmodSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Keyring } from "../../common/mod.js";
import { ActionState } from "../../proto/api.js";
import { dragnet, ndjson, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, writeKeyring } from "../helpers/fleet.js";

// The two-person rule and refusals as an investigator sees them: the real
// console against a fleet whose ACL asks two investigators for file sweeps.

let fleet: TestFleet;
let home: string;

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 2, acl: { file: { minWeight: 2 } } });
  home = fleet.consoleHome();
  await eventually(async () => ((await fleet.api.listAgents()).length === 2 ? true : undefined));
});

afterAll(async () => {
  await fleet?.stop();
});

describe("two-person approval from the console", () => {
  it("holds alice's sweep, shows bob what he approves, and runs it once he does", async () => {
    const submit = await dragnet(["--home", home, "file", "-t", "all", "--path", "/etc/passwd", "--json"]);
    // Exit 3: waiting for a second investigator, nothing sent (not "found", not an error).
    expect(submit.code).toBe(3);
    expect(submit.stderr).toMatch(/waits for approval: signed with weight 1, needs 2; nothing was sent/);
    expect(submit.stderr).toMatch(/with their own key: dragnet --key THEIR\.key action approve \w{26}/);
    const [held] = ndjson(submit.stdout);
    expect(held).toMatchObject({ pendingApproval: true, weight: 1, requiredWeight: 2 });
    const id = String(held!.actionId);
    expect(id).toMatch(/^[0-9a-z]{26}$/);

    const pending = ndjson((await dragnet(["--home", home, "action", "list", "--pending", "--json"])).stdout);
    expect(pending.map((a) => [a.id, a.state, a.weight, a.requiredWeight])).toEqual([
      [id, "pending approval", 1, 2],
    ]);

    // Without a terminal, approval needs --yes; what would run is shown first.
    const asked = await dragnet(["--home", home, "--key", join(home, "bob.key"), "action", "approve", id]);
    expect(asked.code).toBe(2);
    expect(asked.stderr).toMatch(/target: {5}all {2}\(2 agents now\)/);
    expect(asked.stderr).toMatch(/1\. file .*"\/etc\/passwd"/);
    expect(asked.stderr).toMatch(/signed by: {2}alice/);
    expect(asked.stderr).toMatch(/confirm on a terminal, or pass --yes/);

    // Alice cannot approve her own action.
    const self = await dragnet(["--home", home, "action", "approve", id, "--yes"]);
    expect(self.code).toBe(2);
    expect(self.stderr).toMatch(/you \(alice\) already signed action .*another investigator must approve/);

    const approved = await dragnet([
      "--home",
      home,
      "--key",
      join(home, "bob.key"),
      "action",
      "approve",
      id,
      "--yes",
      "--json",
    ]);
    expect(approved.code).toBe(0);
    expect(approved.stderr).toMatch(/approved and released: 2 agents targeted/);
    const rows = ndjson(approved.stdout);
    expect(rows.map((r) => r.path)).toEqual(["/etc/passwd", "/etc/passwd"]);

    const show = await dragnet(["--home", home, "action", "show", id]);
    expect(show.stdout).toMatch(/signed by: alice \(\w+\), bob \(\w+\)/);
    expect(show.stdout).toMatch(/\(complete\)/);

    const audit = ndjson((await dragnet(["--home", home, "audit", "--action", id, "--json"])).stdout);
    expect(audit.some((e) => e.actor === "alice" && e.event === "SubmitAction")).toBe(true);
    // Alice's own approval was refused by her console before it asked anything of the coordinator.
    expect(audit.some((e) => e.actor === "alice" && e.event === "ApproveAction")).toBe(false);
    expect(audit.some((e) => e.actor === "bob" && e.event === "GetAction")).toBe(true);
    expect(audit.some((e) => e.actor === "bob" && e.event === "action approved and released")).toBe(true);
  });

  it("checks who signed against its own keyring, and shows no terminal escapes", async () => {
    const submit = await dragnet([
      "--home",
      home,
      "file",
      "-t",
      "all",
      "--path",
      "/etc/hostname",
      "--action-name",
      "\u001b[2J\u001b[Hharmless \u202eexe.sh",
    ]);
    const id = submit.stdout.trim();
    const asBob = ["--home", home, "--key", join(home, "bob.key"), "action", "approve", id];
    const shown = await dragnet(asBob);
    expect(shown.stderr).toContain("\\u001b[2J\\u001b[Hharmless \\u202eexe.sh");
    expect(shown.stderr).not.toContain("\u001b");
    expect(shown.stderr).toMatch(/signed by: {2}alice \(\w+, signature checked\)/);
    // A console whose keyring does not know alice will not take the coordinator's word that she signed.
    const bobOnly = writeKeyring(join(home, "bob-only.json"), [fleet.bob]);
    const blind = await dragnet([...asBob, "--yes"], { DRAGNET_KEYRING: bobOnly });
    expect(blind.code).toBe(2);
    expect(blind.stderr).toMatch(
      /signed by unknown key .* not in this keyring \[DRAGNET_E_SIG_UNKNOWN_KEY\]/,
    );
    expect((await fleet.api.getAction(id, false)).summary!.state).toBe(
      ActionState.ACTION_STATE_PENDING_APPROVAL,
    );
  });

  it("refuses a key file others can read", async () => {
    const key = join(home, "bob.key");
    chmodSync(key, 0o644);
    try {
      const r = await dragnet(["--home", home, "--key", key, "agents"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/key file .*bob\.key is readable by others \(mode 644\); chmod 600 it/);
    } finally {
      chmodSync(key, 0o600);
    }
  });
});

describe("the keyring an admin installs", () => {
  it("is assembled from .pub files with the default ACL, and refuses a duplicate", async () => {
    for (const name of ["carol", "dave"]) {
      const gen = await dragnet(["--home", home, "key", "generate", "--name", name]);
      expect(gen.code).toBe(0);
    }
    const pubs = [join(home, "carol.pub"), join(home, "dave.pub")];
    const r = await dragnet(["--home", home, "key", "keyring", ...pubs, "--weight", "dave=2"]);
    expect(r.code).toBe(0);
    const ring = Keyring.fromJson(JSON.parse(r.stdout));
    expect(ring.entries().map((e) => [e.name, e.weight])).toEqual([
      ["carol", 1],
      ["dave", 2],
    ]);
    expect(ring.acl.ruleFor("isolate").minWeight).toBe(2);
    expect(ring.acl.ruleFor("file").minWeight).toBe(1);
    const dup = await dragnet(["--home", home, "key", "keyring", pubs[0]!, pubs[0]!]);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/appears twice/);
  });
});

describe("an agent stricter than the coordinator", () => {
  let lenient: TestFleet;
  let lenientHome: string;
  beforeAll(async () => {
    lenient = await startFleet({ agents: 1 });
    // This endpoint's admin asks two investigators for everything; the coordinator does not know.
    const strictRing = writeKeyring(join(lenient.dir, "strict-keyring.json"), [lenient.alice, lenient.bob], {
      default: { minWeight: 2 },
    });
    await lenient.addAgent({ hostname: "strict", keyring: strictRing });
    lenientHome = lenient.consoleHome();
    await eventually(async () => ((await lenient.api.listAgents()).length === 2 ? true : undefined));
  });
  afterAll(async () => {
    await lenient?.stop();
  });

  it("refuses on its own, and the console shows its reason next to the other agent's answer", async () => {
    const r = await dragnet(["--home", lenientHome, "file", "-t", "all", "--path", "/etc/passwd", "--json"]);
    // Found on one agent: exit 0 like grep; the refusal is on stderr.
    expect(r.code).toBe(0);
    expect(ndjson(r.stdout)).toHaveLength(1);
    expect(r.stderr).toMatch(
      /strict \(\w+\): rejected: operation 1 \(file\) needs signatures of weight 2; it has 1 \(alice\) \[DRAGNET_E_WEIGHT\]/,
    );
    expect(r.stderr).toMatch(/2 targeted, 1 answered, 0 failed, 1 found, 1 rejected/);
  });

  it("a target typo is refused by the console with its position before anything is asked", async () => {
    const r = await dragnet(["--home", lenientHome, "agents", "-t", 'tags.env == "prod" and (']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/ended at position 25\n {2}tags.env == "prod" and \(\n {26}\^/);
  });
});
