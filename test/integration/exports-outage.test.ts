import { describe, expect, it } from "vitest";
import { silentLogger } from "../../common/mod.js";
import { parseExports } from "../../coordinator/exports/config.js";
import { Exporter, type SinkStatus } from "../../coordinator/exports/exporter.js";
import { MemoryExportSource } from "../../coordinator/exports/memory-source.js";
import type { ExportKind, ExportRecord } from "../../coordinator/exports/source.js";
import { startHttpReceiver } from "../helpers/http-receiver.js";

// The exporter's at-least-once promise under a real outage, on its own: the
// HTTP receiver is down for 5 s while records keep being stored (the 20 s
// outage through a running coordinator is exports-coordinator.test.ts). Nothing may be lost; the
// status must show the error and the growing lag meanwhile, and lag 0 after.

const OUTAGE_MS = 5_000;

describe("HTTP sinks through a receiver outage", () => {
  it("deliver every record once the receiver is back, showing the error and lag meanwhile", {
    timeout: 60_000,
  }, async () => {
    const receiver = await startHttpReceiver();
    const source = new MemoryExportSource();
    const sinks = parseExports(
      [
        {
          name: "elastic",
          type: "http",
          carries: ["alerts", "results"],
          format: "bulk",
          url: `${receiver.origin}/_bulk`,
          index: "dragnet",
          gzip: true,
          batch: 50,
          retry: { minMs: 100, maxMs: 1_000 },
        },
        {
          name: "splunk",
          type: "http",
          carries: ["audit"],
          format: "hec",
          url: `${receiver.origin}/services/collector/event`,
          batch: 50,
          retry: { minMs: 100, maxMs: 1_000 },
        },
      ],
      "/",
    );
    const exporter = new Exporter(source, sinks, silentLogger, { pollMs: 100 });
    const sent: ExportRecord[] = [];
    let n = 0;
    const add = (kind: ExportKind) => {
      const record: ExportRecord = {
        kind,
        id: `${kind}:${n}`,
        atMs: Date.now(),
        message: `record ${n}`,
        data: { n: n++ },
      };
      sent.push(record);
      source.add(record);
    };
    // The coordinator storing records all along: a few every 100 ms, and a poke each time.
    const producer = setInterval(() => {
      add("alerts");
      add("results");
      add("audit");
      exporter.poke();
    }, 100);
    const byName = async () =>
      Object.fromEntries((await exporter.status()).map((s) => [s.name, s])) as Record<string, SinkStatus>;
    exporter.start();
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      expect(receiver.counts.size).toBeGreaterThan(0); // delivering before the outage

      await receiver.stop();
      const down = Date.now();
      let maxLag = 0;
      let sawRetrying = false;
      while (Date.now() - down < OUTAGE_MS) {
        await new Promise((r) => setTimeout(r, 500));
        const status = await byName();
        maxLag = Math.max(maxLag, status.elastic!.lag);
        sawRetrying ||= status.elastic!.retrying && status.splunk!.retrying;
      }
      const during = await byName();
      // The status says what is wrong and how far behind each sink is.
      expect(sawRetrying).toBe(true);
      for (const s of [during.elastic!, during.splunk!]) {
        expect(s.lastError).toMatch(/ECONNREFUSED/);
        expect(s.lastErrorMs).toBeGreaterThanOrEqual(down);
        expect(s.lastSuccessMs).toBeLessThan(down + 1_000);
      }
      // ~50 records a kind stored during the outage (one every 100 ms), none delivered.
      expect(during.elastic!.lag).toBeGreaterThan(60);
      expect(during.elastic!.lagByKind.alerts).toBeGreaterThan(30);
      expect(during.splunk!.lag).toBeGreaterThan(30);
      expect(maxLag).toBe(during.elastic!.lag); // it only grew

      await receiver.start();
      const up = Date.now();
      await new Promise((r) => setTimeout(r, 1_000)); // still producing after the receiver is back
      clearInterval(producer);
      const deadline = Date.now() + 10_000;
      while ((await exporter.status()).some((s) => s.lag > 0 || s.retrying)) {
        if (Date.now() > deadline)
          throw new Error(`not caught up: ${JSON.stringify(await exporter.status())}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const after = await byName();
      expect(after.elastic!.lastSuccessMs).toBeGreaterThan(up);
      expect(after.splunk!.lastSuccessMs).toBeGreaterThan(up);

      // Every record arrived; anything that came more than once carries an id we sent
      // (a receiver drops the repeat by it — the _bulk index answers 409).
      const sentIds = sent.map((r) => r.id).sort();
      expect([...receiver.counts.keys()].sort()).toEqual(sentIds);
      const received = receiver.records.length;
      const repeats = [...receiver.counts.values()].reduce((sum, c) => sum + c - 1, 0);
      expect(received).toBe(sentIds.length + repeats);
      // Counted delivered only on a 2xx, so never more than the receiver took (a reply lost
      // as the receiver went down makes the receiver's count the larger).
      const delivered = after.elastic!.delivered + after.splunk!.delivered;
      expect(delivered).toBeGreaterThanOrEqual(sentIds.length);
      expect(delivered).toBeLessThanOrEqual(received);
      expect(receiver.refused).toEqual([]);
    } finally {
      clearInterval(producer);
      await exporter.stop();
      await receiver.stop();
    }
  });
});

describe("a record the receiver refuses for what it holds", () => {
  it("is set aside, logged and counted; the records around it are delivered", {
    timeout: 30_000,
  }, async () => {
    const receiver = await startHttpReceiver();
    const source = new MemoryExportSource();
    const records: ExportRecord[] = Array.from({ length: 20 }, (_, n) => ({
      kind: "results",
      id: `results:${n}`,
      atMs: Date.now(),
      message: `record ${n}`,
      data: { n },
    }));
    source.add(...records);
    // HEC refuses any request holding record 7, every time: a batch of 20 never goes through whole.
    receiver.poison(["results:7"]);
    const logged: Array<Record<string, unknown>> = [];
    const log = {
      ...silentLogger,
      error: (_msg: string, fields?: Record<string, unknown>) => logged.push(fields ?? {}),
    };
    const sinks = parseExports(
      [
        {
          name: "splunk",
          type: "http",
          carries: ["results"],
          format: "hec",
          url: `${receiver.origin}/services/collector/event`,
          retry: { minMs: 100, maxMs: 500 },
        },
      ],
      "/",
    );
    const exporter = new Exporter(source, sinks, log as typeof silentLogger, { pollMs: 100 });
    exporter.start();
    try {
      const status = await (async () => {
        for (;;) {
          const s = (await exporter.status())[0]!;
          if (s.lag === 0) return s;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const got = [...receiver.counts.keys()].sort();
      expect(got).toEqual(
        records
          .map((r) => r.id)
          .filter((id) => id !== "results:7")
          .sort(),
      );
      expect(status.skipped).toBe(1);
      expect(status.lastError).toMatch(/set aside results:7: .*HTTP 400/);
      expect(logged.map((f) => f.record)).toEqual(["results:7"]);
      // Nothing left behind: later records still flow.
      source.add({ kind: "results", id: "results:20", atMs: Date.now(), message: "late", data: {} });
      exporter.poke();
      await new Promise((r) => setTimeout(r, 1000));
      expect(receiver.counts.get("results:20")).toBe(1);
    } finally {
      await exporter.stop();
      await receiver.stop();
    }
  });
});
