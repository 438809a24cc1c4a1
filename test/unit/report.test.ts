import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Page } from "../../common/journal.js";
import { renderHtml, renderMarkdown } from "../../coordinator/report.js";
import { EvidenceItem } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// The post-incident report as people read it: the Markdown and the HTML say
// the same things (custody included), and the timeline's labels are whole.

const t0 = Date.parse("2026-12-01T09:00:00Z");
let seq = 0;
const page = (minutes: number, kind: string, content: object, author = "coordinator"): Page => ({
  incidentId: "01incident00000000000000000",
  seq: ++seq,
  atMs: t0 + minutes * 60_000,
  author,
  authorKeyId: "",
  kind,
  content: JSON.stringify(content),
  contentSha256: "",
  prevHash: "",
  authorSignature: "",
  pageHash: "",
  seal: "",
});

const evidence = EvidenceItem.fromPartial({
  id: "01evidence00000000000000000",
  hostname: "web-7",
  path: "/var/log/auth.log",
  size: 52_428_800,
  sha256: "a".repeat(64),
  status: "verified",
  collectors: ["alice", "bob"],
  receivedAtMs: t0 + 20 * 60_000,
  incidentId: "01incident00000000000000000",
});

const input = {
  incident: {
    id: "01incident00000000000000000",
    title: "web-7 beaconing",
    severity: "high",
    phase: "containment",
    openedAtMs: t0,
    openedBy: "alice",
    headPages: 0,
    headHash: "",
    headSeal: "",
  },
  pages: [
    page(0, "phase change", { phase: "identification" }),
    // Two minutes of containment between long phases: the short band's label must still read whole.
    page(30, "phase change", { phase: "containment", from: "identification" }),
    page(32, "phase change", { phase: "eradication", from: "containment" }),
    page(
      33,
      "custody transfer",
      { evidenceId: evidence.id, event: "transfer", to: "Forensics Ltd" },
      "alice",
    ),
    page(
      34,
      "custody transfer",
      { evidenceId: evidence.id, event: "export", to: "/cases/42/auth.log" },
      "bob",
    ),
  ],
  actions: [],
  evidence: [evidence],
  chain: { ok: true as const, pages: 5 },
  generatedAtMs: t0 + 240 * 60_000,
};

describe("the post-incident report", () => {
  it("gives each evidence item its chain of custody, in the Markdown and the HTML alike", () => {
    const md = renderMarkdown(input as never);
    const html = renderHtml(input as never);
    for (const text of [
      "custody: evidence 01evidence00000000000000000 handed to Forensics Ltd (page 4, 2026-12-01T09:33:00Z, alice)",
      "custody: evidence 01evidence00000000000000000 exported to /cases/42/auth.log (page 5, 2026-12-01T09:34:00Z, bob)",
    ]) {
      expect(md).toContain(text);
      expect(html).toContain(text);
    }
  });

  it("draws every phase label after the bands, on alternating rows, so none is covered or cut", () => {
    const html = renderHtml(input as never);
    const svg = html.slice(html.indexOf("<svg"), html.indexOf("</svg>"));
    const lastRect = svg.lastIndexOf("<rect");
    const labels = [...svg.matchAll(/<text x="\d+" y="(\d+)" font-size="11">([a-z]+)<\/text>/g)];
    expect(labels.map((m) => m[2])).toEqual(["identification", "containment", "eradication"]);
    expect(labels.every((m) => (m.index ?? 0) > lastRect)).toBe(true);
    expect(labels.map((m) => m[1])).toEqual(["23", "37", "23"]);
    // Looked at in a real browser: the screenshot is kept beside the report for a person to read.
    const dir = tempDir("dragnet-report-");
    writeFileSync(join(dir, "report.html"), html);
    const shot = spawnSync(
      "chromium",
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        `--screenshot=${join(dir, "report.png")}`,
        "--window-size=1000,700",
        `file://${join(dir, "report.html")}`,
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(shot.status).toBe(0);
  });
});
