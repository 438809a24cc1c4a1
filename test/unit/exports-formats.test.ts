import { describe, expect, it } from "vitest";
import {
  bulkFailure,
  cutUtf8,
  escapeSdValue,
  formatBulk,
  formatHec,
  formatNdjson,
  formatSyslog,
  hecAccepted,
  octetCounted,
  SD_VALUE_MAX,
  type SyslogOptions,
} from "../../coordinator/exports/formats.js";
import type { ExportRecord } from "../../coordinator/exports/source.js";
import { splitConcatenatedJson } from "../helpers/http-receiver.js";

// An RFC 5424 parser written from the ABNF (§6), independent of the formatter:
// the syslog lines must parse back to the same values.
interface Parsed5424 {
  pri: number;
  version: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sd: Array<{ id: string; params: Array<[string, string]> }>;
  msg: string;
}

const PRINTUSASCII = "[\\x21-\\x7e]";
const HEADER = new RegExp(
  `^<(\\d{1,3})>([1-9]\\d{0,2}) ` +
    `(-|\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d{1,6})?(?:Z|[+-]\\d{2}:\\d{2})) ` +
    `(${PRINTUSASCII}{1,255}) (${PRINTUSASCII}{1,48}) (${PRINTUSASCII}{1,128}) (${PRINTUSASCII}{1,32}) `,
);
const SD_NAME = /^[\x21-\x7e]{1,32}$/;

function parse5424(line: string): Parsed5424 {
  const head = HEADER.exec(line);
  if (!head) throw new Error(`header does not match the ABNF: ${line.slice(0, 120)}`);
  const pri = Number(head[1]);
  if (pri > 191) throw new Error("PRIVAL over 191");
  let i = head[0].length;
  const sd: Parsed5424["sd"] = [];
  if (line[i] === "-") i++;
  else {
    while (line[i] === "[") {
      i++;
      let id = "";
      while (line[i] !== " " && line[i] !== "]") id += line[i++];
      if (!SD_NAME.test(id) || /[=" \]]/.test(id)) throw new Error(`bad SD-ID ${id}`);
      const params: Array<[string, string]> = [];
      while (line[i] === " ") {
        i++;
        let name = "";
        while (line[i] !== "=") {
          if (i >= line.length) throw new Error("PARAM-NAME runs off the end");
          name += line[i++];
        }
        if (!SD_NAME.test(name) || /[=" \]]/.test(name)) throw new Error(`bad PARAM-NAME ${name}`);
        i++;
        if (line[i] !== '"') throw new Error(`PARAM-VALUE of ${name} does not start with a quote`);
        i++;
        let value = "";
        for (;;) {
          const c = line[i++];
          if (c === undefined) throw new Error("PARAM-VALUE runs off the end");
          if (c === '"') break;
          // Inside a value a bare "]" is forbidden: it must come escaped (§6.3.3).
          if (c === "]") throw new Error(`unescaped ] in ${name}`);
          if (c === "\\" && (line[i] === '"' || line[i] === "\\" || line[i] === "]")) value += line[i++];
          else value += c;
        }
        params.push([name, value]);
      }
      if (line[i] !== "]") throw new Error(`SD-ELEMENT ${id} not closed`);
      i++;
      sd.push({ id, params });
    }
    if (sd.length === 0) throw new Error("STRUCTURED-DATA is neither - nor an SD-ELEMENT");
  }
  let msg = "";
  if (i < line.length) {
    if (line[i] !== " ") throw new Error("no space before MSG");
    msg = line.slice(i + 1);
  }
  return {
    pri,
    version: Number(head[2]),
    timestamp: head[3]!,
    hostname: head[4]!,
    appName: head[5]!,
    procId: head[6]!,
    msgId: head[7]!,
    sd,
    msg,
  };
}

const OPTIONS: SyslogOptions = {
  facility: 16,
  hostname: "coord-1",
  appName: "dragnet",
  procId: "4242",
  maxBytes: 64 * 1024,
};

function record(over: Partial<ExportRecord> = {}): ExportRecord {
  return {
    kind: "alerts",
    id: "alerts:01HX",
    atMs: Date.UTC(2024, 0, 2, 3, 4, 5, 678),
    agentId: "agent-7",
    hostname: "web-1",
    actionId: "act-1",
    incidentId: "inc-9",
    message: "YARA rule matched /tmp/x",
    data: { rule: "evil", path: "/tmp/x", size: 12 },
    ...over,
  };
}

describe("RFC 5424 syslog line", () => {
  it("parses back per the ABNF with every header field and SD param intact", () => {
    const line = formatSyslog(record(), OPTIONS);
    const p = parse5424(line);
    expect(p.pri).toBe(16 * 8 + 4); // local0, warning for alerts
    expect(p.version).toBe(1);
    expect(p.timestamp).toBe("2024-01-02T03:04:05.678Z");
    expect([p.hostname, p.appName, p.procId, p.msgId]).toEqual(["coord-1", "dragnet", "4242", "alerts"]);
    expect(p.sd).toEqual([
      {
        id: "dragnet@32473",
        params: [
          ["id", "alerts:01HX"],
          ["kind", "alerts"],
          ["agent", "agent-7"],
          ["host", "web-1"],
          ["action", "act-1"],
          ["incident", "inc-9"],
        ],
      },
    ]);
    // MSG: the summary, a space, the data as JSON (ASCII here, so no BOM).
    expect(p.msg).toBe(`YARA rule matched /tmp/x ${JSON.stringify(record().data)}`);
  });

  it("gives audit notice (5) and other kinds informational (6) severity", () => {
    expect(parse5424(formatSyslog(record({ kind: "audit" }), OPTIONS)).pri).toBe(16 * 8 + 5);
    expect(parse5424(formatSyslog(record({ kind: "results" }), OPTIONS)).pri).toBe(16 * 8 + 6);
    expect(parse5424(formatSyslog(record({ kind: "notebook" }), { ...OPTIONS, facility: 4 })).pri).toBe(
      4 * 8 + 6,
    );
  });

  it('escapes ", \\ and ] in SD values so they parse back unchanged', () => {
    const nasty = 'a"b\\c]d';
    expect(escapeSdValue(nasty)).toBe('a\\"b\\\\c\\]d');
    const line = formatSyslog(record({ id: nasty, actionId: "]]", incidentId: '\\"' }), OPTIONS);
    const params = Object.fromEntries(parse5424(line).sd[0]!.params);
    expect(params.id).toBe(nasty);
    expect(params.action).toBe("]]");
    expect(params.incident).toBe('\\"');
  });

  it("leaves out absent SD params and bounds long values", () => {
    const line = formatSyslog(
      record({ agentId: undefined, hostname: undefined, actionId: "x".repeat(1000), incidentId: undefined }),
      OPTIONS,
    );
    const params = Object.fromEntries(parse5424(line).sd[0]!.params);
    expect(Object.keys(params)).toEqual(["id", "kind", "action"]);
    expect(params.action).toHaveLength(SD_VALUE_MAX);
  });

  it("keeps the message on one line (receivers framing by LF would split it)", () => {
    const line = formatSyslog(record({ message: "two\nlines\r\nhere" }), OPTIONS);
    expect(line).not.toMatch(/[\r\n]/);
    expect(parse5424(line).msg.startsWith("two lines here ")).toBe(true);
  });

  it("starts a non-ASCII MSG with a BOM and counts octets, not characters", () => {
    const line = formatSyslog(record({ message: "fichier modifié 🔥" }), OPTIONS);
    const msg = parse5424(line).msg;
    expect(msg.startsWith("\uFEFFfichier modifié 🔥 ")).toBe(true);
    const framed = octetCounted(line);
    const [len, ...rest] = framed.split(" ");
    expect(Number(len)).toBe(Buffer.byteLength(line));
    expect(Number(len)).toBeGreaterThan(line.length); // é, 🔥 and the BOM are several bytes each
    expect(rest.join(" ")).toBe(line);
  });

  it("cuts an oversized message to the byte limit, says so in SD and never splits a character", () => {
    const data = { text: "é".repeat(10_000) }; // 20,000 bytes of two-byte characters
    const full = formatSyslog(record({ data }), OPTIONS);
    const line = formatSyslog(record({ data }), { ...OPTIONS, maxBytes: 8192 });
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(8192);
    expect(Buffer.byteLength(line)).toBeGreaterThan(8000); // cut to fit, not emptied
    expect(line).not.toContain("\uFFFD");
    const p = parse5424(line);
    expect(Object.fromEntries(p.sd[0]!.params).truncated).toBe(String(Buffer.byteLength(full)));
    expect(p.msg.endsWith("...(truncated)")).toBe(true);
  });

  it("cutUtf8 keeps whole characters", () => {
    expect(cutUtf8("aé", 2)).toBe("a");
    expect(cutUtf8("aé", 3)).toBe("aé");
    expect(cutUtf8("🔥🔥", 5)).toBe("🔥");
  });
});

describe("HEC body", () => {
  it("is concatenated event envelopes HEC accepts, one per record", () => {
    const records = [
      record(),
      record({ id: "audit:7", kind: "audit", hostname: undefined, atMs: 1_704_067_200_005 }),
    ];
    const events = splitConcatenatedJson(formatHec(records, { defaultHost: "coord-1", index: "soc" })).map(
      (e) => JSON.parse(e) as Record<string, unknown>,
    );
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      time: Date.UTC(2024, 0, 2, 3, 4, 5, 678) / 1000,
      host: "web-1",
      source: "dragnet",
      sourcetype: "dragnet:alerts",
      index: "soc",
      fields: { dragnet_id: "alerts:01HX", dragnet_kind: "alerts" },
      event: { id: "alerts:01HX", kind: "alerts", agentId: "agent-7", data: record().data },
    });
    // Epoch seconds with the milliseconds as the fraction; the coordinator's name when the record has no host.
    expect(events[1]!.time).toBe(1_704_067_200.005);
    expect(events[1]!.host).toBe("coord-1");
    expect(events[1]!.sourcetype).toBe("dragnet:audit");
  });

  it("omits index when none is configured (the token's default index applies)", () => {
    const event = JSON.parse(formatHec([record()], { defaultHost: "h" })) as Record<string, unknown>;
    expect("index" in event).toBe(false);
  });

  it("reads HEC's answer: only code 0 is success", () => {
    expect(hecAccepted('{"text":"Success","code":0}')).toBe(true);
    expect(hecAccepted('{"text":"Server is busy","code":9}')).toBe(false);
    expect(hecAccepted("<html>proxy error</html>")).toBe(false);
  });
});

describe("_bulk body", () => {
  it("pairs a create action carrying the record id with an ECS source, and ends with a newline", () => {
    const records = [record(), record({ id: "results:c1", kind: "results", data: { exitCode: 0 } })];
    const body = formatBulk(records, "dragnet-soc");
    expect(body.endsWith("\n")).toBe(true);
    const lines = body
      .slice(0, -1)
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toEqual({ create: { _index: "dragnet-soc", _id: "alerts:01HX" } });
    expect(lines[1]).toMatchObject({
      "@timestamp": "2024-01-02T03:04:05.678Z",
      message: "YARA rule matched /tmp/x",
      event: {
        kind: "alert",
        dataset: "dragnet.alerts",
        id: "alerts:01HX",
        category: ["intrusion_detection"],
      },
      host: { name: "web-1" },
      agent: { id: "agent-7" },
      labels: { dragnet_kind: "alerts", dragnet_action: "act-1", dragnet_incident: "inc-9" },
      dragnet: { action_id: "act-1", incident_id: "inc-9", alerts: record().data },
    });
    expect(lines[2]).toEqual({ create: { _index: "dragnet-soc", _id: "results:c1" } });
    expect(lines[3]).toMatchObject({
      event: { kind: "event", dataset: "dragnet.results" },
      dragnet: { results: { exitCode: 0 } },
    });
  });

  it("leaves _index out when the URL names the index", () => {
    expect(JSON.parse(formatBulk([record()]).split("\n")[0]!)).toEqual({ create: { _id: "alerts:01HX" } });
  });

  it("counts 409 (already there) as success and anything else as failure", () => {
    expect(
      bulkFailure(JSON.stringify({ errors: false, items: [{ create: { status: 201 } }] })),
    ).toBeUndefined();
    const repeats = { errors: true, items: [{ create: { status: 201 } }, { create: { status: 409 } }] };
    expect(bulkFailure(JSON.stringify(repeats))).toBeUndefined();
    const rejected = {
      errors: true,
      items: [
        { create: { status: 409 } },
        { create: { status: 429, error: { type: "es_rejected_execution_exception" } } },
      ],
    };
    expect(bulkFailure(JSON.stringify(rejected))).toMatch(/1 of 2 _bulk items failed.*429.*es_rejected/);
    expect(bulkFailure("not json")).toMatch(/not JSON/);
  });
});

describe("NDJSON", () => {
  it("writes one object per line with id, kind, @timestamp, the record fields and data", () => {
    const body = formatNdjson([record(), record({ id: "alerts:2", agentId: undefined })]);
    const lines = body.split("\n");
    expect(lines.at(-1)).toBe("");
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first).toEqual({
      id: "alerts:01HX",
      kind: "alerts",
      "@timestamp": "2024-01-02T03:04:05.678Z",
      agentId: "agent-7",
      hostname: "web-1",
      actionId: "act-1",
      incidentId: "inc-9",
      message: "YARA rule matched /tmp/x",
      data: record().data,
    });
    expect("agentId" in (JSON.parse(lines[1]!) as object)).toBe(false);
  });
});
