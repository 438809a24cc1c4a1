import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { publicEntryOf } from "../../common/mod.js";
import { dragnet, ndjson, requireBuild, twoPeople } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// The notebook as a team keeps it through the CLI: an incident opened, a
// sweep and a two-person collection attached to it, notes (one correcting
// another), a phase change — each leaving exactly the expected pages, in
// order; verify holds; an edit made directly in SQLite is named by verify;
// the report carries every page and the review questions.

let fleet: TestFleet;
let home: string;
let hooks: Server;
const posted: Array<Record<string, unknown>> = [];
let incident = "";
const dir = tempDir("dragnet-notebook-");
const cli = (args: string[]) => dragnet(["--home", home, ...args]);

async function pages() {
  return (await fleet.api.getIncident(incident)).pages;
}

beforeAll(async () => {
  requireBuild();
  // A role's webhook: a local HTTP server that keeps what it is sent.
  hooks = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      posted.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hooks.listen(0, "127.0.0.1", r));
  const port = (hooks.address() as AddressInfo).port;
  fleet = await startFleet({ agents: 2, notify: { "legal counsel": `http://127.0.0.1:${port}/notify` } });
  home = fleet.consoleHome();
  await eventually(async () => ((await fleet.api.listAgents()).length === 2 ? true : undefined));
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  hooks?.close();
});

describe("the incident notebook", () => {
  it("opens an incident: page 1 records the phase, title and who opened it", async () => {
    const opened = await cli([
      "incident",
      "open",
      "--title",
      "web-7 beaconing to 203.0.113.9",
      "--severity",
      "high",
    ]);
    expect(opened.code).toBe(0);
    incident = opened.stdout.trim();
    expect(incident).toMatch(/^[0-9a-z]{26}$/);
    const [p1] = await pages();
    expect([p1!.seq, p1!.kind, p1!.author, JSON.parse(p1!.content).phase]).toEqual([
      1,
      "phase change",
      "alice",
      "identification",
    ]);
  });

  it("records a sweep and a two-person collection with --incident, then notes and a phase change, in order", async () => {
    const sweep = await cli([
      "process",
      "-t",
      "all",
      "--name",
      "^node$",
      "--incident",
      incident.slice(0, 10),
      "-q",
    ]);
    expect(sweep.code).toBe(0);
    await eventually(async () => ((await pages()).length >= 3 ? true : undefined));

    const file = join(dir, "auth.log");
    writeFileSync(file, "Nov 26 22:01:13 web sshd[812]: Accepted password for root from 203.0.113.9\n");
    const approved = await twoPeople(home, [
      "collect",
      "-t",
      `id == "${fleet.agents[0]!.id}"`,
      "--path",
      file,
      "--incident",
      incident,
    ]);
    expect(approved.code).toBe(0);
    await eventually(async () => {
      const kinds = (await pages()).map((p) => p.kind);
      return kinds.includes("evidence collected") && kinds.filter((k) => k === "results summary").length === 2
        ? true
        : undefined;
    });

    expect(
      (await cli(["incident", "note", incident, "Beacon every 60 s to 203.0.113.9:443 seen on web-7."])).code,
    ).toBe(0);
    expect(
      (await cli(["incident", "note", incident, "It is every 30 s, not 60.", "--corrects", "8"])).code,
    ).toBe(0);
    expect(
      (await cli(["incident", "phase", incident, "containment", "--note", "isolating web-7"])).code,
    ).toBe(0);

    const all = await pages();
    expect(all.map((p) => p.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(all.slice(0, 5).map((p) => [p.kind, p.author])).toEqual([
      ["phase change", "alice"],
      ["action submitted", "alice"],
      ["results summary", "coordinator"],
      ["action submitted", "alice"],
      ["action approved", "bob"],
    ]);
    // Evidence and the collection's summary, in whichever order they were stored.
    expect(
      all
        .slice(5, 7)
        .map((p) => p.kind)
        .sort(),
    ).toEqual(["evidence collected", "results summary"]);
    expect(all.slice(7).map((p) => [p.kind, p.author])).toEqual([
      ["note", "alice"],
      ["note", "alice"],
      ["phase change", "alice"],
    ]);
    const evidence = JSON.parse(all.find((p) => p.kind === "evidence collected")!.content);
    expect([evidence.path, evidence.status, evidence.incidentId, evidence.collectors]).toEqual([
      file,
      "verified",
      incident,
      ["alice", "bob"],
    ]);
    expect(JSON.parse(all[8]!.content)).toEqual({ text: "It is every 30 s, not 60.", corrects: 8 });
    expect(all[7]!.authorKeyId).toBe(fleet.alice.keyId);
    expect(JSON.parse(all[9]!.content)).toMatchObject({ phase: "containment", from: "identification" });
    const verified = await cli(["incident", "verify", incident]);
    expect([verified.code, verified.stdout]).toEqual([
      0,
      "intact: 10 pages, chain and signatures verified\n",
    ]);
    const list = ndjson((await cli(["--json", "incident", "list"])).stdout);
    expect(list.map((i) => [i.id, i.phase, i.pages])).toEqual([[incident, "containment", 10]]);
  });

  it("keeps custody: transfer, export with a signed record, verify, register by hand; notification on the record and to the webhook", async () => {
    const item = (await fleet.api.listEvidence(incident, 10))[0]!;
    const before = (await pages()).length;
    const transfer = await cli([
      "evidence",
      "transfer",
      item.id,
      "--to",
      "Jane Roe/Police Scotland",
      "--note",
      "USB stick, sealed bag 41",
    ]);
    expect(transfer.code).toBe(0);
    const out = join(dir, "export");
    const exported = await cli(["evidence", "export", item.id, "--out", out, "--note", "for counsel"]);
    expect(exported.code).toBe(0);
    const record = JSON.parse(readFileSync(join(out, `${item.id}.custody.json`), "utf8"));
    expect(record.keyId).toBe(fleet.alice.keyId);
    expect(JSON.parse(record.record).sha256).toBe(item.sha256);
    expect(
      spawnSync("sha256sum", [join(out, `${item.id}.evidence`)], { encoding: "utf8" }).stdout.split(" ")[0],
    ).toBe(item.sha256);
    const verified = await cli(["evidence", "verify", item.id]);
    expect([verified.code, verified.stdout]).toEqual([0, `intact: sha256 ${item.sha256}\n`]);
    // Offline, as an outside firm would: only the record, the file and the exporter's public key.
    const pub = join(dir, "alice.pub");
    writeFileSync(pub, JSON.stringify(publicEntryOf(fleet.alice)));
    const recordFile = join(out, `${item.id}.custody.json`);
    const offline = await dragnet(["evidence", "verify-custody", recordFile, "--pub", pub], { HOME: dir });
    expect([offline.code, offline.stdout]).toEqual([
      0,
      expect.stringMatching(
        new RegExp(`^intact: .*is evidence ${item.id} .*sha256 ${item.sha256}.* as alice exported it`),
      ),
    ]);
    // One byte flipped in the file, or in the record: refused, saying which.
    const copy = readFileSync(join(out, `${item.id}.evidence`));
    copy[0] ^= 1;
    const flipped = join(dir, "flipped.evidence");
    writeFileSync(flipped, copy);
    const badFile = await dragnet([
      "evidence",
      "verify-custody",
      recordFile,
      "--pub",
      pub,
      "--file",
      flipped,
    ]);
    expect([badFile.code, badFile.stdout]).toEqual([
      1,
      expect.stringMatching(/^NOT INTACT: .*flipped\.evidence is \d+ bytes hashing to/),
    ]);
    const forged = join(dir, "forged.custody.json");
    writeFileSync(forged, readFileSync(recordFile, "utf8").replace("for counsel", "for COUNSEL"));
    const badRecord = await dragnet([
      "evidence",
      "verify-custody",
      forged,
      "--pub",
      pub,
      "--file",
      join(out, `${item.id}.evidence`),
    ]);
    expect([badRecord.code, badRecord.stdout]).toEqual([
      1,
      expect.stringMatching(/^NOT INTACT: the signature does not match the record/),
    ]);
    const bobPub = join(dir, "bob.pub");
    writeFileSync(bobPub, JSON.stringify(publicEntryOf(fleet.bob)));
    const wrongKey = await dragnet(["evidence", "verify-custody", recordFile, "--pub", bobPub]);
    expect([wrongKey.code, wrongKey.stdout]).toEqual([
      1,
      expect.stringMatching(/signed by key .* and .*bob\.pub is key/),
    ]);
    const registered = await cli([
      "evidence",
      "register",
      "--incident",
      incident,
      "--sha256",
      "a".repeat(64),
      "--path",
      "disk image of web-7",
      "--host",
      "web-7",
      "--size",
      "1000",
    ]);
    expect(registered.code).toBe(0);
    const notified = await cli([
      "incident",
      "notify",
      incident,
      "--to",
      "legal counsel",
      "--message",
      "possible data exposure",
    ]);
    expect([notified.code, notified.stdout]).toEqual([0, expect.stringContaining("(webhook: HTTP 204)")]);
    expect(posted.map((p) => [p.to, p.message, (p.incident as { id: string }).id, p.by])).toEqual([
      ["legal counsel", "possible data exposure", incident, "alice"],
    ]);
    const added = (await pages()).slice(before);
    expect(added.map((p) => p.kind)).toEqual([
      "custody transfer",
      "custody transfer",
      "evidence collected",
      "notification",
    ]);
    expect(JSON.parse(added[0]!.content)).toMatchObject({
      event: "transfer",
      to: "Jane Roe/Police Scotland",
      evidenceId: item.id,
    });
    expect(JSON.parse(added[1]!.content)).toMatchObject({ event: "export", sha256: item.sha256 });
    expect(JSON.parse(added[2]!.content)).toMatchObject({
      status: "registered",
      path: "disk image of web-7",
    });
    expect(JSON.parse(added[3]!.content)).toEqual({
      to: "legal counsel",
      message: "possible data exposure",
      webhook: "HTTP 204",
    });
  });

  it("refuses an action naming an incident that does not exist, and a note with a forged signature", async () => {
    const none = await cli(["process", "-t", "all", "--incident", "0000000000"]);
    expect([none.code, none.stderr]).toEqual([2, expect.stringMatching(/no incident 0000000000/)]);
    const forged = fleet.api.addNote(
      incident,
      "nothing happened",
      Date.now(),
      Buffer.alloc(64).toString("base64"),
      0,
    );
    await expect(forged).rejects.toThrow(/the note's signature by alice does not verify/);
  });

  it("writes a report with every page and the review questions (md and self-contained html)", async () => {
    const md = await cli(["incident", "report", incident]);
    expect(md.code).toBe(0);
    for (let seq = 1; seq <= 10; seq++) expect(md.stdout).toMatch(new RegExp(`^\\| ${seq} \\|`, "m"));
    expect(md.stdout).toContain("chain verified intact");
    expect(md.stdout).toContain("## Isolation\n\n(none)\n");
    expect(md.stdout).toContain("### What would have detected the incident sooner?");
    expect(md.stdout).toMatch(/- identification: .* for \d+ s/);
    const out = join(dir, "report.html");
    expect((await cli(["incident", "report", incident, "--format", "html", "--out", out])).code).toBe(0);
    const html = readFileSync(out, "utf8");
    expect(html).toContain('<svg id="timeline"');
    expect(html).not.toMatch(/<script|src="http|href="http/);
    expect(html.match(/<tr><td>\d+<\/td>/g)?.length).toBeGreaterThanOrEqual(14);
    // Rendered by a real browser, offline: the timeline and every page are there, and nothing complained.
    const chromium = ["chromium", "chromium-browser"].find(
      (c) => spawnSync("sh", ["-c", `command -v ${c}`]).status === 0,
    );
    if (!chromium)
      throw new Error("chromium is not installed (.ci/run installs it): the HTML report cannot be checked");
    const render = spawnSync(
      chromium,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        `file://${out}`,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(render.stdout).toContain('<svg id="timeline"');
    expect(render.stdout.match(/<tr><td>\d+<\/td>/g)?.length).toBeGreaterThanOrEqual(14);
    expect(render.stdout).toContain("What should change in policies, tools, training and communication?");
    expect(render.stderr).not.toMatch(/CONSOLE|Uncaught/);
  });

  it("shows the notebook to people a line per page, worded as the report words it", async () => {
    const shown = await cli(["incident", "show", incident.slice(0, 12)]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain("phase: identification → containment — isolating web-7");
    expect(shown.stdout).not.toMatch(/\{"/);
    expect(Math.max(...shown.stdout.split("\n").map((l) => l.length))).toBeLessThan(260);
    // --json keeps each page's content whole.
    const json = ndjson((await cli(["--json", "incident", "show", incident])).stdout);
    expect(
      JSON.parse(
        String(
          json.find((p) => p.kind === "phase change" && String(p.content).includes("containment"))!.content,
        ),
      ),
    ).toMatchObject({ phase: "containment" });
  });

  it("names the page that was edited directly in the database", async () => {
    await fleet.restartCoordinator((database) => {
      const db = new Database(database);
      db.prepare("UPDATE journal SET content = ? WHERE incident_id = ? AND seq = 8").run(
        JSON.stringify({ text: "Nothing to see." }),
        incident,
      );
      db.close();
    });
    const r = await cli(["incident", "verify", incident]);
    expect([r.code, r.stdout]).toEqual([
      1,
      "BROKEN at page 8: page 8's content does not match its SHA-256\n",
    ]);
    const report = await cli(["incident", "report", incident]);
    expect(report.stdout).toContain("CHAIN BROKEN at page 8");
  });
});
