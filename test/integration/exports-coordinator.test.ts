import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, signAction, writeFileAtomic } from "../../common/mod.js";
import { fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";
import { type HttpReceiver, startHttpReceiver } from "../helpers/http-receiver.js";
import { type Rsyslog, startRsyslog } from "../helpers/rsyslog.js";

// Exports from a running coordinator: its stored results, audit entries and
// notebook pages reach Splunk HEC and Elasticsearch _bulk (a receiver the test
// runs, checking bodies as those products document them), Debian's rsyslogd
// over TLS with the lab's CA, and an NDJSON file. With the HTTP receiver down
// for 20 s while sweeps go on, every record still arrives once it is back,
// counted by id; the status says what happened meanwhile.

let fleet: TestFleet;
let receiver: HttpReceiver;
let rsyslog: Rsyslog;
let fileSink: string;
const TOKEN = "0f1e2d3c-hec-token";

async function sweep(): Promise<string[]> {
  const body = fileAction({ paths: ["/etc"], names: ["^hostname$"] }, { target: "all" });
  const res = await fleet.api.submitAction(signAction(body, fleet.alice));
  expect(res.targeted).toBe(3);
  return [res.actionId];
}

async function commandIdsOf(actionIds: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const id of actionIds) {
    const detail = await eventually(async () => {
      const d = await fleet.api.getAction(id, true);
      return d.results.filter((r) => r.result).length === 3 ? d : undefined;
    }, 20_000);
    ids.push(...detail.results.map((r) => r.commandId));
  }
  return ids;
}

const arrived = (ids: string[], prefix: string, via: string) =>
  ids.filter((id) => receiver.records.some((r) => r.via === via && r.id === `${prefix}${id}`));

beforeAll(async () => {
  receiver = await startHttpReceiver();
  receiver.requireAuthorization(`Splunk ${TOKEN}`);
  const dir = tempDir("dragnet-exports-fleet-");
  const tokenFile = join(dir, "hec.token");
  writeFileAtomic(tokenFile, `${TOKEN}\n`, 0o600);
  fileSink = join(dir, "audit.ndjson");
  const syslogPort = await freePort();
  const retry = { minMs: 200, maxMs: 2000 };
  fleet = await startFleet({
    agents: 3,
    exports: [
      {
        name: "splunk",
        type: "http",
        format: "hec",
        url: `${receiver.origin}/services/collector/event`,
        tokenFile,
        carries: ["results", "audit"],
        retry,
      },
      {
        name: "elastic",
        type: "http",
        format: "bulk",
        url: `${receiver.origin}/_bulk`,
        index: "dragnet",
        gzip: true,
        carries: ["results", "notebook"],
        retry,
      },
      {
        name: "siem-syslog",
        type: "syslog",
        transport: "tls",
        address: `127.0.0.1:${syslogPort}`,
        ca: "ca.pem",
        carries: ["results", "audit"],
        retry,
      },
      { name: "archive", type: "file", path: fileSink, carries: ["audit"], retry },
    ],
  });
  const { certFile, keyFile } = await fleet.issueCert("rsyslog");
  rsyslog = await startRsyslog({ port: syslogPort, tls: { caFile: fleet.caFile, certFile, keyFile } });
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await receiver?.stop();
  await rsyslog?.stop();
});

describe("a coordinator's exports", () => {
  it("deliver results, audit and notebook pages to HEC, _bulk, syslog over TLS and a file", async () => {
    const incident = await fleet.api.openIncident("exported notebook", "low");
    const commands = await commandIdsOf(await sweep());
    await eventually(() => (arrived(commands, "result:", "hec").length === 3 ? true : undefined), 15_000);
    await eventually(() => (arrived(commands, "result:", "bulk").length === 3 ? true : undefined), 15_000);
    // The audit trail: the submission, as HEC events and in the file.
    await eventually(
      () =>
        receiver.records.some(
          (r) =>
            r.via === "hec" &&
            r.id.startsWith("audit:") &&
            JSON.stringify(r.body).includes("action submitted"),
        ) || undefined,
      15_000,
    );
    const page = await eventually(
      () => receiver.records.find((r) => r.via === "bulk" && r.id === `notebook:${incident.id}:1`),
      15_000,
    );
    expect(page.index).toBe("dragnet");
    expect(receiver.refused).toEqual([]);
    // rsyslogd parsed each result's structured data, its id inside.
    const lines = await eventually(() => {
      const got = rsyslog.received().filter((m) => commands.some((c) => m.sd.includes(`result:${c}`)));
      return got.length >= 3 ? got : undefined;
    }, 15_000);
    expect(lines.every((m) => m.msgid === "results" && m.sd.startsWith("[dragnet@"))).toBe(true);
    const file = await eventually(() => {
      const text = readFileSync(fileSink, "utf8");
      return text.includes("action submitted") ? text : undefined;
    }, 15_000);
    for (const line of file.trim().split("\n")) expect(JSON.parse(line).kind).toBe("audit");
    // Every API call is audited, this one too: the sinks carrying audit may be a call or two behind.
    const caughtUp = (s: { name: string; lag: number }) => s.lag <= (s.name === "elastic" ? 0 : 2);
    const status = await eventually(async () => {
      const s = await fleet.api.exportStatus();
      return s.every((x) => caughtUp(x) && x.delivered > 0) ? s : undefined;
    }, 15_000);
    expect(status.map((s) => s.name).sort()).toEqual(["archive", "elastic", "siem-syslog", "splunk"]);
  }, 60_000);

  it("lose nothing while the HTTP receiver is down for 20 s mid-sweep", async () => {
    await receiver.stop();
    const actions: string[] = [];
    const started = Date.now();
    while (Date.now() - started < 20_000) {
      actions.push(...(await sweep()));
      await new Promise((r) => setTimeout(r, 2000));
    }
    const during = await fleet.api.exportStatus();
    const splunk = during.find((s) => s.name === "splunk")!;
    expect(splunk.lag).toBeGreaterThan(0);
    expect(splunk.retrying).toBe(true);
    expect(splunk.lastError).toMatch(/ECONNREFUSED/);
    // Syslog is another receiver: it went on meanwhile (its last error, if any, is from before
    // rsyslogd started, when the fleet came up).
    const syslog = during.find((s) => s.name === "siem-syslog")!;
    expect(syslog.retrying).toBe(false);
    expect(syslog.lastErrorMs).toBeLessThan(started);
    await receiver.start();
    const commands = await commandIdsOf(actions);
    expect(commands.length).toBe(actions.length * 3);
    await eventually(
      () =>
        arrived(commands, "result:", "hec").length === commands.length &&
        arrived(commands, "result:", "bulk").length === commands.length
          ? true
          : undefined,
      30_000,
    );
    // Each id once: nothing was acknowledged and then lost here, so no repeats either.
    for (const c of commands) {
      expect(receiver.counts.get(`result:${c}`)).toBe(2); // once through HEC, once through _bulk
    }
    const after = await eventually(async () => {
      const s = await fleet.api.exportStatus();
      return s.every((x) => x.lag <= (x.name === "elastic" ? 0 : 2)) ? s : undefined;
    }, 15_000);
    expect(after.find((s) => s.name === "splunk")!.retrying).toBe(false);
    expect(receiver.refused).toEqual([]);
  }, 90_000);
});
