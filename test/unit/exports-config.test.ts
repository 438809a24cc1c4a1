import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Codes, DragnetError } from "../../common/mod.js";
import { parseExports } from "../../coordinator/exports/config.js";
import { backoffMs } from "../../coordinator/exports/exporter.js";
import { tempDir } from "../helpers/fleet.js";

/** The CONFIG error parseExports throws, so each test can check its message. */
function refusal(json: unknown, baseDir = "/nonexistent"): string {
  try {
    parseExports(json, baseDir);
  } catch (err) {
    expect(DragnetError.is(err, Codes.CONFIG)).toBe(true);
    return (err as Error).message;
  }
  throw new Error("parseExports accepted it");
}

const tcp = { name: "siem", type: "syslog", carries: ["alerts"], address: "10.0.0.5:6514" };
const hec = {
  name: "splunk",
  type: "http",
  carries: ["alerts"],
  format: "hec",
  url: "https://splunk:8088/services/collector/event",
};

describe("parseExports", () => {
  it("fills in the defaults", () => {
    const [syslog, file] = parseExports(
      [tcp, { name: "disk", type: "file", carries: ["results", "audit"], path: "exports/dragnet.jsonl" }],
      "/etc/dragnet",
    );
    expect(syslog).toMatchObject({
      type: "syslog",
      host: "10.0.0.5",
      port: 6514,
      transport: "tcp",
      appName: "dragnet",
      facility: 16,
      batch: 500,
      retry: { minMs: 1000, maxMs: 60_000 },
      maxMessageBytes: 64 * 1024,
    });
    // Relative paths are the config file's directory's.
    expect(file).toMatchObject({
      path: "/etc/dragnet/exports/dragnet.jsonl",
      maxBytes: 100 * 1024 * 1024,
      keep: 5,
    });
    expect(parseExports(undefined, "/")).toEqual([]);
  });

  it("refuses UDP for anything but alerts, saying why", () => {
    const message = refusal([{ ...tcp, transport: "udp", carries: ["alerts", "results"] }]);
    expect(message).toMatch(
      /^exports\[0\]\.transport "udp" may carry only \["alerts"\]: UDP loses records silently/,
    );
    const [udp] = parseExports([{ ...tcp, transport: "udp" }], "/");
    expect(udp).toMatchObject({ transport: "udp", maxMessageBytes: 8192 });
  });

  it("refuses an http sink without a url, naming the entry", () => {
    const { url: _, ...noUrl } = hec;
    expect(refusal([tcp, noUrl])).toMatch(/^exports\[1\]\.url is missing/);
    expect(refusal([{ ...hec, url: "ftp://x/" }])).toMatch(/^exports\[0\]\.url must be an http\(s\) URL/);
    expect(refusal([{ ...hec, url: "https://u:p@x/" }])).toMatch(/carries credentials/);
  });

  it("refuses a headers file others can read, and reads it once it is private", () => {
    const dir = tempDir();
    const file = join(dir, "headers.json");
    writeFileSync(file, JSON.stringify({ Authorization: "Splunk 1234", "X-Tenant": "soc" }));
    chmodSync(file, 0o644);
    expect(refusal([{ ...hec, headersFile: "headers.json" }], dir)).toBe(
      `exports[0].headersFile ${file} holds a secret: it must not be readable by others (chmod 600)`,
    );
    chmodSync(file, 0o600);
    const [sink] = parseExports([{ ...hec, headersFile: "headers.json" }], dir);
    expect(sink).toMatchObject({ headers: { Authorization: "Splunk 1234", "X-Tenant": "soc" } });
  });

  it("turns a token file into Splunk or Bearer authorization by format", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "token"), "abc-123\n", { mode: 0o600 });
    const [splunk, ndjson] = parseExports(
      [
        { ...hec, tokenFile: "token" },
        {
          name: "n",
          type: "http",
          carries: ["audit"],
          format: "ndjson",
          url: "http://x/in",
          tokenFile: "token",
        },
      ],
      dir,
    );
    expect(splunk).toMatchObject({ headers: { Authorization: "Splunk abc-123" } });
    expect(ndjson).toMatchObject({ headers: { Authorization: "Bearer abc-123" } });
  });

  it("refuses duplicate names", () => {
    expect(refusal([tcp, { ...hec, name: "siem" }])).toBe(
      "exports[1].name siem is taken by an earlier sink: names must be unique",
    );
  });

  it("refuses bad names, kinds, types, addresses and unknown settings", () => {
    expect(refusal([{ ...tcp, name: "a b" }])).toMatch(/^exports\[0\]\.name must be 1–64/);
    expect(refusal([{ ...tcp, carries: [] }])).toMatch(/^exports\[0\]\.carries must be a non-empty list/);
    expect(refusal([{ ...tcp, carries: ["alert"] }])).toMatch(/"alert" is not one of results, alerts/);
    expect(refusal([{ ...tcp, type: "kafka" }])).toMatch(/^exports\[0\]\.type must be/);
    expect(refusal([{ ...tcp, address: "10.0.0.5" }])).toMatch(/^exports\[0\]\.address must be "host:port"/);
    expect(refusal([{ ...tcp, adress: "x:1" }])).toBe("exports[0].adress is not a setting of a syslog sink");
    expect(refusal([{ ...tcp, retry: { minMs: 5000, maxMs: 100 } }])).toMatch(
      /retry\.maxMs \(100\) must not be below/,
    );
    expect(refusal({})).toBe("exports must be a list of sinks");
  });

  it("needs an index for _bulk, from the setting or the URL", () => {
    const bulk = {
      name: "es",
      type: "http",
      carries: ["alerts"],
      format: "bulk",
      url: "http://es:9200/_bulk",
    };
    expect(refusal([bulk])).toMatch(/format "bulk" needs an index/);
    expect(parseExports([{ ...bulk, url: "http://es:9200/dragnet/_bulk" }], "/")[0]).not.toHaveProperty(
      "index",
    );
    expect(parseExports([{ ...bulk, index: "dragnet" }], "/")[0]).toMatchObject({ index: "dragnet" });
  });

  it("reads an IPv6 address, a named facility and a CA file", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(join(dir, "junk.pem"), "not a cert");
    const [sink] = parseExports(
      [{ ...tcp, address: "[::1]:6514", transport: "tls", ca: "ca.pem", facility: "local3" }],
      dir,
    );
    expect(sink).toMatchObject({ host: "::1", port: 6514, facility: 19 });
    expect((sink as { caPem: string }).caPem).toContain("BEGIN CERTIFICATE");
    expect(refusal([{ ...tcp, transport: "tls", ca: "junk.pem" }], dir)).toMatch(/holds no PEM certificate/);
    expect(refusal([{ ...tcp, transport: "tcp", ca: "ca.pem" }], dir)).toMatch(
      /ca is for transport "tls" only/,
    );
  });
});

describe("backoffMs", () => {
  const retry = { minMs: 1000, maxMs: 60_000 };
  it("doubles from min, caps at max, and jitters within the upper half", () => {
    expect(backoffMs(1, retry, () => 0)).toBe(1000); // never below min
    expect(backoffMs(1, retry, () => 1)).toBe(1000);
    expect(backoffMs(3, retry, () => 0)).toBe(2000); // 4000 ceiling, half of it at least
    expect(backoffMs(3, retry, () => 1)).toBe(4000);
    expect(backoffMs(20, retry, () => 1)).toBe(60_000);
    expect(backoffMs(1000, retry, () => 0.5)).toBe(45_000);
  });
});
