import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../common/mod.js";
import { createCertificateAuthority } from "../../common/pki.js";
import {
  type FileSinkConfig,
  parseExports,
  type SyslogSinkConfig,
} from "../../coordinator/exports/config.js";
import { Exporter } from "../../coordinator/exports/exporter.js";
import { FileSink } from "../../coordinator/exports/file-sink.js";
import { MemoryExportSource } from "../../coordinator/exports/memory-source.js";
import type { ExportKind, ExportRecord } from "../../coordinator/exports/source.js";
import { SyslogSink } from "../../coordinator/exports/syslog-sink.js";
import { tempDir } from "../helpers/fleet.js";
import { type HttpReceiver, startHttpReceiver } from "../helpers/http-receiver.js";
import { type ReceivedSyslog, type Rsyslog, startRsyslog } from "../helpers/rsyslog.js";

// Each sink against a real receiver: Debian's rsyslogd (plain TCP and TLS via
// gtls), a real HTTP server speaking HEC and _bulk, and real files. Records
// come from an in-memory ExportSource (the source is not a wire).

/** Records of a kind; every 7th carries the characters RFC 5424 makes us escape in SD values. */
function records(kind: ExportKind, count: number, from = 0): ExportRecord[] {
  return Array.from({ length: count }, (_, j) => {
    const i = from + j;
    return {
      kind,
      id: `${kind}:r${i}`,
      atMs: Date.UTC(2024, 5, 1, 12, 0, 0, i),
      agentId: `agent-${i % 3}`,
      hostname: `host-${i % 3}`,
      actionId: i % 7 === 0 ? `act"]\\${i}` : `act-${i}`,
      message: `record ${i} of ${kind}`,
      data: { i, note: "données ✓", nested: { ok: true } },
    };
  });
}

/** SD param values out of rsyslog's %structured-data%, unescaped. */
function sdParams(sd: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of sd.matchAll(/ ([^ =\]"]+)="((?:[^"\\]|\\.)*)"/g))
    out[m[1]!] = m[2]!.replace(/\\(["\\\]])/g, "$1");
  return out;
}

async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function syslogConfig(
  name: string,
  port: number,
  over: Record<string, unknown> = {},
  dir = "/",
): SyslogSinkConfig {
  return parseExports(
    [
      {
        name,
        type: "syslog",
        carries: ["results", "alerts", "audit"],
        address: `127.0.0.1:${port}`,
        batch: 40,
        hostname: "coord-test",
        retry: { minMs: 50, maxMs: 500 },
        ...over,
      },
    ],
    dir,
  )[0] as SyslogSinkConfig;
}

/** Checks what rsyslogd got against what was sent: every id once, SD and MSG intact. */
function expectReceivedOnce(got: ReceivedSyslog[], sent: ExportRecord[]): void {
  const byId = new Map<string, ReceivedSyslog[]>();
  for (const message of got) {
    const id = sdParams(message.sd).id!;
    byId.set(id, [...(byId.get(id) ?? []), message]);
  }
  expect([...byId.keys()].sort()).toEqual(sent.map((r) => r.id).sort());
  for (const r of sent) {
    const [message, ...again] = byId.get(r.id)!;
    expect(again).toEqual([]); // exactly once
    expect(message!.app).toBe("dragnet");
    expect(message!.msgid).toBe(r.kind);
    // rsyslog's own parse of our SD gives back every value, escapes undone.
    expect(sdParams(message!.sd)).toEqual({
      id: r.id,
      kind: r.kind,
      agent: r.agentId,
      host: r.hostname,
      action: r.actionId,
    });
    // rsyslog reads an unescaped "]" inside quotes leniently; RFC 5424 §6.3.3 wants it escaped on the wire.
    if (r.actionId!.includes("]")) expect(message!.sd).toContain(String.raw`action="act\"\]\\`);
    const msg = message!.msg.replace(/^\uFEFF/, "");
    expect(msg.startsWith(`${r.message} `)).toBe(true);
    expect(JSON.parse(msg.slice(r.message.length + 1))).toEqual(r.data);
  }
}

describe("syslog sink into rsyslogd over TCP", () => {
  let rsyslog: Rsyslog;
  beforeAll(async () => {
    rsyslog = await startRsyslog();
  });
  afterAll(async () => {
    await rsyslog?.stop();
  });

  it("delivers every record once with structured data intact, and the exporter's lag reaches 0", async () => {
    const source = new MemoryExportSource();
    const sent = [...records("results", 90), ...records("alerts", 25), ...records("audit", 5)];
    source.add(...sent);
    const exporter = new Exporter(source, [syslogConfig("rs-tcp", rsyslog.port)], silentLogger, {
      pollMs: 50,
    });
    exporter.start();
    try {
      const got = await rsyslog.waitFor(sent.length);
      await until(async () => (await exporter.status())[0]!.lag === 0, 5_000, "lag 0");
      // A little longer: nothing arrives twice after the cursors moved.
      await new Promise((r) => setTimeout(r, 300));
      expectReceivedOnce(rsyslog.received(), sent);
      expect(got.length).toBe(sent.length);
      const [status] = await exporter.status();
      expect(status).toMatchObject({
        name: "rs-tcp",
        delivered: sent.length,
        lastError: "",
        retrying: false,
      });
      expect(status!.lagByKind).toEqual({ results: 0, alerts: 0, audit: 0 });
      expect(status!.lastSuccessMs).toBeGreaterThan(0);
    } finally {
      await exporter.stop();
    }
  });
});

describe("syslog sink into rsyslogd over UDP (alerts only)", () => {
  it("sends one datagram per alert, an oversized one cut to 8 KiB and marked truncated", async () => {
    const rsyslog = await startRsyslog({ udp: true });
    const sink = new SyslogSink(
      syslogConfig("rs-udp", rsyslog.port, { transport: "udp", carries: ["alerts"] }),
    );
    try {
      const [big, ...small] = records("alerts", 4, 700);
      big!.data = { blob: "x".repeat(20_000) };
      await sink.deliver([big!, ...small]);
      const got = await rsyslog.waitFor(4);
      const byId = new Map(got.map((m) => [sdParams(m.sd).id, m]));
      // Each small alert whole, one message each.
      for (const r of small)
        expect(JSON.parse(byId.get(r.id)!.msg.slice(r.message.length + 1))).toEqual(r.data);
      const cut = byId.get(big!.id)!;
      expect(Buffer.byteLength(cut.raw)).toBeLessThanOrEqual(8192);
      expect(Number(sdParams(cut.sd).truncated)).toBeGreaterThan(20_000);
      expect(cut.msg.endsWith("...(truncated)")).toBe(true);
    } finally {
      await sink.close();
      await rsyslog.stop();
    }
  });
});

describe("syslog sink into rsyslogd over TLS (gtls, lab CA)", () => {
  let rsyslog: Rsyslog;
  let caFile: string;
  let dir: string;
  beforeAll(async () => {
    dir = tempDir();
    const ca = await createCertificateAuthority("export test CA");
    const leaf = await ca.issue({ commonName: "rsyslog", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
    caFile = join(dir, "ca.pem");
    writeFileSync(caFile, ca.cert);
    writeFileSync(join(dir, "rsyslog.pem"), leaf.cert);
    writeFileSync(join(dir, "rsyslog.key"), leaf.key, { mode: 0o600 });
    rsyslog = await startRsyslog({
      tls: { caFile, certFile: join(dir, "rsyslog.pem"), keyFile: join(dir, "rsyslog.key") },
    });
  });
  afterAll(async () => {
    await rsyslog?.stop();
  });

  it("delivers every record once, verifying rsyslogd's certificate against the lab CA", async () => {
    const source = new MemoryExportSource();
    const sent = [...records("alerts", 50), ...records("audit", 30)];
    source.add(...sent);
    const config = syslogConfig("rs-tls", rsyslog.port, { transport: "tls", ca: caFile });
    const exporter = new Exporter(source, [config], silentLogger, { pollMs: 50 });
    exporter.start();
    try {
      await rsyslog.waitFor(sent.length);
      await until(async () => (await exporter.status())[0]!.lag === 0, 5_000, "lag 0");
      await new Promise((r) => setTimeout(r, 300));
      expectReceivedOnce(rsyslog.received(), sent);
    } finally {
      await exporter.stop();
    }
  });

  it("refuses a receiver whose certificate another CA signed (nothing is sent)", async () => {
    const other = await createCertificateAuthority("someone else");
    const otherCa = join(dir, "other-ca.pem");
    writeFileSync(otherCa, other.cert);
    const before = rsyslog.received().length;
    const sink = new SyslogSink(syslogConfig("rs-tls-bad", rsyslog.port, { transport: "tls", ca: otherCa }));
    try {
      await expect(sink.deliver(records("alerts", 1, 9000))).rejects.toThrow(/certificate/i);
    } finally {
      await sink.close();
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(rsyslog.received().length).toBe(before);
  });
});

describe("syslog sink when rsyslogd restarts", () => {
  it("fails while the receiver is down and reconnects on its own once it is back", async () => {
    const first = await startRsyslog();
    const sink = new SyslogSink(syslogConfig("rs-restart", first.port));
    let second: Rsyslog | undefined;
    try {
      await sink.deliver(records("alerts", 10));
      await first.waitFor(10);
      await first.stop();
      // The connection it had is gone (rsyslogd closed it): a new one is refused.
      await expect(sink.deliver(records("alerts", 5, 10))).rejects.toThrow(/ECONNREFUSED|closed/);
      second = await startRsyslog({ port: first.port, dir: first.dir });
      await sink.deliver(records("alerts", 5, 10));
      const got = await second.waitFor(15);
      expect(got.map((m) => sdParams(m.sd).id)).toEqual(records("alerts", 15).map((r) => r.id));
    } finally {
      await sink.close();
      await second?.stop();
      await first.stop();
    }
  });
});

describe("HTTP sink into a real HTTP server", () => {
  let receiver: HttpReceiver;
  let dir: string;
  beforeAll(async () => {
    receiver = await startHttpReceiver();
    dir = tempDir();
    writeFileSync(join(dir, "hec.token"), "11111111-2222-3333-4444-555555555555\n", { mode: 0o600 });
  });
  afterAll(async () => {
    await receiver?.stop();
  });

  function exporterFor(source: MemoryExportSource, entry: Record<string, unknown>): Exporter {
    const config = parseExports([{ retry: { minMs: 50, maxMs: 200 }, batch: 30, ...entry }], dir)[0]!;
    return new Exporter(source, [config], silentLogger, { pollMs: 50 });
  }

  it("posts gzipped HEC events with the Splunk token; each record arrives once", async () => {
    receiver.requireAuthorization("Splunk 11111111-2222-3333-4444-555555555555");
    const source = new MemoryExportSource();
    const sent = [...records("alerts", 70), ...records("notebook", 10)];
    source.add(...sent);
    const exporter = exporterFor(source, {
      name: "splunk",
      type: "http",
      carries: ["alerts", "notebook"],
      format: "hec",
      url: `${receiver.origin}/services/collector/event`,
      tokenFile: "hec.token",
      gzip: true,
      index: "soc",
    });
    exporter.start();
    try {
      await until(async () => (await exporter.status())[0]!.lag === 0, 10_000, "lag 0");
      expect(receiver.refused).toEqual([]);
      expect(receiver.lastHeaders?.["content-encoding"]).toBe("gzip");
      const hec = receiver.records.filter((r) => r.via === "hec");
      expect(hec.map((r) => r.id).sort()).toEqual(sent.map((r) => r.id).sort()); // once each
      const alert = hec.find((r) => r.id === "alerts:r3")!.body;
      expect(alert).toMatchObject({ sourcetype: "dragnet:alerts", index: "soc", host: "host-0" });
      expect(alert.time).toBe(Date.UTC(2024, 5, 1, 12, 0, 0, 3) / 1000);
    } finally {
      await exporter.stop();
      receiver.requireAuthorization(undefined);
    }
  });

  it("shows a refused token as the sink's error and delivers once it is accepted", async () => {
    receiver.requireAuthorization("Splunk another-token");
    const source = new MemoryExportSource();
    source.add(...records("alerts", 3, 500));
    const exporter = exporterFor(source, {
      name: "splunk-bad-token",
      type: "http",
      carries: ["alerts"],
      format: "hec",
      url: `${receiver.origin}/services/collector/event`,
      tokenFile: "hec.token",
    });
    exporter.start();
    try {
      await until(async () => (await exporter.status())[0]!.retrying, 5_000, "a failed delivery");
      const status = (await exporter.status())[0]!;
      expect(status.lastError).toMatch(/HTTP 403: \{"text":"Invalid token","code":4\}/);
      expect(status.lag).toBe(3); // the cursor stayed
      receiver.requireAuthorization(undefined);
      await until(async () => (await exporter.status())[0]!.lag === 0, 5_000, "lag 0");
      expect((await exporter.status())[0]!.retrying).toBe(false);
    } finally {
      await exporter.stop();
      receiver.requireAuthorization(undefined);
    }
  });

  it("sends _bulk with create + record ids and sends again items the index rejected", async () => {
    const source = new MemoryExportSource();
    const sent = [...records("results", 60, 1000), ...records("evidence", 5, 1000)];
    source.add(...sent);
    // One item of the first batch is rejected (429) while the others are created.
    receiver.rejectBulkItemsOnce(["results:r1003"]);
    const exporter = exporterFor(source, {
      name: "elastic",
      type: "http",
      carries: ["results", "evidence"],
      format: "bulk",
      url: `${receiver.origin}/dragnet-events/_bulk`,
    });
    exporter.start();
    try {
      await until(async () => (await exporter.status())[0]!.lag === 0, 10_000, "lag 0");
      expect(receiver.refused).toEqual([]);
      const bulk = receiver.records.filter((r) => r.via === "bulk" && sent.some((s) => s.id === r.id));
      const ids = new Set(bulk.map((r) => r.id));
      expect(ids.size).toBe(sent.length); // every record is in the index
      // The batch with the rejected item went again whole: its other 29 came back as repeats (409),
      // the rejected one was created the second time.
      const repeated = [...receiver.counts].filter(([id, n]) => n > 1 && id.startsWith("results:r10"));
      expect(repeated.length).toBe(29);
      expect(receiver.counts.get("results:r1003")).toBe(1);
      expect(bulk.every((r) => r.index === "dragnet-events")).toBe(true);
      expect((await exporter.status())[0]!.lastError).toMatch(
        /1 of 30 _bulk items failed \(first: status 429/,
      );
    } finally {
      await exporter.stop();
    }
  });
});

describe("file sink", () => {
  function lines(path: string): string[] {
    return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean) : [];
  }

  it("rotates before a write would pass maxBytes and loses no record across the files", async () => {
    const dir = tempDir();
    const path = join(dir, "dragnet.jsonl");
    const [config] = parseExports(
      [{ name: "disk", type: "file", carries: ["results"], path, maxBytes: 4096, keep: 50 }],
      dir,
    );
    const sink = new FileSink(config as FileSinkConfig);
    const sent = records("results", 200);
    for (let i = 0; i < sent.length; i += 25) await sink.deliver(sent.slice(i, i + 25));
    await sink.close();
    const files = [path, ...Array.from({ length: 50 }, (_, i) => `${path}.${i + 1}`)].filter((p) =>
      existsSync(p),
    );
    expect(files.length).toBeGreaterThan(3);
    expect(existsSync(`${path}.1`)).toBe(true);
    for (const f of files) expect(statSync(f).size).toBeLessThanOrEqual(4096);
    // Oldest file first: path.N … path.1, path — together every record once, in order.
    const ids = files
      .reverse()
      .flatMap(lines)
      .map((l) => (JSON.parse(l) as { id: string }).id);
    expect(ids).toEqual(sent.map((r) => r.id));
    expect(statSync(path).mode & 0o777).toBe(0o600); // records are sensitive
  });

  it("keeps only `keep` rotated files, the newest ones", async () => {
    const dir = tempDir();
    const path = join(dir, "dragnet.jsonl");
    const config = parseExports(
      [{ name: "disk", type: "file", carries: ["alerts"], path, maxBytes: 2048, keep: 2 }],
      dir,
    )[0]!;
    const source = new MemoryExportSource();
    const sent = records("alerts", 150);
    source.add(...sent);
    const exporter = new Exporter(source, [config], silentLogger, { pollMs: 50 });
    exporter.start();
    await until(async () => (await exporter.status())[0]!.lag === 0, 10_000, "lag 0");
    await exporter.stop();
    expect(existsSync(`${path}.1`)).toBe(true);
    expect(existsSync(`${path}.2`)).toBe(true);
    expect(existsSync(`${path}.3`)).toBe(false);
    const ids = [`${path}.2`, `${path}.1`, path]
      .flatMap(lines)
      .map((l) => (JSON.parse(l) as { id: string }).id);
    // What is left is the newest records, contiguous and ending with the last one sent.
    expect(ids).toEqual(sent.slice(sent.length - ids.length).map((r) => r.id));
  });
});
