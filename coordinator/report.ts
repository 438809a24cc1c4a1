import type { ChainCheck, Page } from "../common/journal.js";
import { pageSummary, pageContent as parse } from "../common/notebook-pages.js";
import type { ActionSummary, EvidenceItem } from "../proto/api.js";
import type { StoredIncident } from "./store/store.js";

// The post-incident report: the notebook's timeline, the actions with their
// completion counts, evidence, isolation periods, how long each phase took,
// and the review questions to answer at the lessons-learned meeting. Markdown
// for the record; HTML as one self-contained file (inline style, an SVG
// timeline, no script) that reads offline.

export interface ReportInput {
  incident: StoredIncident;
  pages: Page[];
  actions: ActionSummary[];
  evidence: EvidenceItem[];
  chain: ChainCheck;
  generatedAtMs: number;
}

export const REVIEW_QUESTIONS = [
  "Did detection and response work as intended?",
  "What would have detected the incident sooner?",
  "What would have helped containment and recovery?",
  "What should change in policies, tools, training and communication?",
];

const orNone = (lines: string[]) => (lines.length > 0 ? lines : ["(none)"]);
const iso = (ms: number) => (ms ? new Date(ms).toISOString().replace(".000Z", "Z") : "");
const minutes = (ms: number) =>
  ms < 60_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;

/** How long each phase lasted, from the phase-change pages (the last one runs until the report). */
export function phaseDurations(
  pages: Page[],
  untilMs: number,
): Array<{ phase: string; fromMs: number; toMs: number }> {
  const changes = pages
    .filter((p) => p.kind === "phase change")
    .map((p) => ({ phase: String(parse(p).phase), at: p.atMs }));
  return changes.map((c, i) => ({ phase: c.phase, fromMs: c.at, toMs: changes[i + 1]?.at ?? untilMs }));
}

/** Isolation periods per host, from isolation and unisolation pages (an open one runs until the report). */
export function isolationPeriods(
  pages: Page[],
  untilMs: number,
): Array<{ host: string; fromMs: number; toMs: number; open: boolean }> {
  const open = new Map<string, number>();
  const periods: Array<{ host: string; fromMs: number; toMs: number; open: boolean }> = [];
  for (const p of pages) {
    if (p.kind !== "isolation" && p.kind !== "unisolation") continue;
    const c = parse(p);
    const host = String(c.hostname || c.agentId);
    if (p.kind === "isolation" && !open.has(host)) open.set(host, p.atMs);
    if (p.kind === "unisolation" && open.has(host)) {
      periods.push({ host, fromMs: open.get(host)!, toMs: p.atMs, open: false });
      open.delete(host);
    }
  }
  for (const [host, from] of open) periods.push({ host, fromMs: from, toMs: untilMs, open: true });
  return periods;
}

export function renderMarkdown(r: ReportInput): string {
  const i = r.incident;
  const lines: string[] = [
    `# Incident ${i.id}: ${i.title}`,
    "",
    `- Severity: ${i.severity}`,
    `- Phase: ${i.phase}`,
    `- Opened: ${iso(i.openedAtMs)} by ${i.openedBy}`,
    `- Notebook: ${r.pages.length} pages, ${r.chain.ok ? "chain verified intact" : `CHAIN BROKEN at page ${r.chain.seq}: ${r.chain.problem}`}`,
    `- Report generated: ${iso(r.generatedAtMs)}`,
    "",
    "## Timeline",
    "",
    "| page | time | author | kind | what |",
    "| ---: | --- | --- | --- | --- |",
    ...r.pages.map(
      (p) =>
        `| ${p.seq} | ${iso(p.atMs)} | ${p.author} | ${p.kind} | ${pageSummary(p).replace(/\|/g, "\\|").replace(/\n/g, " ")} |`,
    ),
    "",
    "## Phases",
    "",
    ...phaseDurations(r.pages, r.generatedAtMs).map(
      (d) => `- ${d.phase}: ${iso(d.fromMs)} for ${minutes(d.toMs - d.fromMs)}`,
    ),
    "",
    "## Actions",
    "",
    "| action | name | modules | targeted | answered | failed | found |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ...r.actions.map((a) => {
      const c = a.counts!;
      const answered = c.success + c.failed + c.rejected + c.timeout;
      return `| ${a.id} | ${a.name} | ${a.modules.join(", ")} | ${c.targeted} | ${answered} | ${c.failed + c.rejected + c.timeout} | ${c.found} |`;
    }),
    "",
    "## Evidence",
    "",
    ...(r.evidence.length === 0 ? ["(none)"] : []),
    ...r.evidence.flatMap((e) => [
      `- **${e.id}** ${evidenceLine(e)}`,
      ...custodyLines(r, e).map((line) => `  - custody: ${line}`),
    ]),
    "",
    "## Isolation",
    "",
    ...orNone(
      isolationPeriods(r.pages, r.generatedAtMs).map(
        (p) =>
          `- ${p.host}: ${iso(p.fromMs)} → ${p.open ? "still isolated" : iso(p.toMs)} (${minutes(p.toMs - p.fromMs)})`,
      ),
    ),
    "",
    "## Post-incident review",
    "",
    ...REVIEW_QUESTIONS.flatMap((q) => [
      `### ${q}`,
      "",
      "_(to be answered at the lessons-learned meeting)_",
      "",
    ]),
  ];
  return `${lines.join("\n")}\n`;
}

/** One evidence item for people: where from, size, hash, status, who collected it and when. */
function evidenceLine(e: EvidenceItem): string {
  return `${e.hostname}:${e.path} — ${e.size} bytes, SHA-256 ${e.sha256}, ${e.status}, collected by ${e.collectors.join(", ")} at ${iso(e.receivedAtMs)}`;
}

/** Its chain of custody: each hand-over or export the notebook records. */
function custodyLines(r: ReportInput, e: EvidenceItem): string[] {
  return r.pages
    .filter((p) => p.kind === "custody transfer" && parse(p).evidenceId === e.id)
    .map((p) => `${pageSummary(p)} (page ${p.seq}, ${iso(p.atMs)}, ${p.author})`);
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The phases and pages on a time axis, as inline SVG. */
function timelineSvg(r: ReportInput): string {
  const from = r.incident.openedAtMs;
  const to = Math.max(r.generatedAtMs, (r.pages.at(-1)?.atMs ?? from) + 1);
  const width = 900;
  const x = (t: number) => Math.round(20 + ((t - from) / (to - from)) * (width - 40));
  const colours = ["#cfe8ff", "#ffe7b3", "#ffd0d0", "#d7f5d0", "#e8d9ff", "#d0f0f0", "#f0e0d0", "#e0e0e0"];
  const phases = phaseDurations(r.pages, to);
  const bands = phases.map(
    (d, i) =>
      `<rect x="${x(d.fromMs)}" y="10" width="${Math.max(1, x(d.toMs) - x(d.fromMs))}" height="30" fill="${colours[i % colours.length]}"><title>${esc(d.phase)}</title></rect>`,
  );
  // Labels after every band (a later band must not cover an earlier label), on two rows in
  // turn so that short neighbouring phases do not run into each other.
  const labels = phases.map(
    (d, i) => `<text x="${x(d.fromMs) + 3}" y="${i % 2 ? 37 : 23}" font-size="11">${esc(d.phase)}</text>`,
  );
  const ticks = r.pages.map(
    (p) =>
      `<line x1="${x(p.atMs)}" y1="45" x2="${x(p.atMs)}" y2="65" stroke="#333"><title>${p.seq}: ${esc(p.kind)}</title></line>`,
  );
  return `<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="${width}" height="90" role="img" aria-label="timeline">${bands.join("")}${labels.join("")}${ticks.join("")}<text x="20" y="85" font-size="11">${esc(iso(from))}</text><text x="${width - 200}" y="85" font-size="11">${esc(iso(to))}</text></svg>`;
}

export function renderHtml(r: ReportInput): string {
  // The markdown's sections, as HTML: one file, inline style, no script, no external resource.
  const i = r.incident;
  const rows = r.pages
    .map(
      (p) =>
        `<tr><td>${p.seq}</td><td>${esc(iso(p.atMs))}</td><td>${esc(p.author)}</td><td>${esc(p.kind)}</td><td>${esc(pageSummary(p))}</td></tr>`,
    )
    .join("\n");
  const actions = r.actions
    .map((a) => {
      const c = a.counts!;
      return `<tr><td>${esc(a.id)}</td><td>${esc(a.name)}</td><td>${esc(a.modules.join(", "))}</td><td>${c.targeted}</td><td>${c.success}</td><td>${c.failed + c.rejected + c.timeout}</td><td>${c.found}</td></tr>`;
    })
    .join("\n");
  // The Markdown's wording, custody included: an item without its chain of custody is half the record.
  const evidence = r.evidence
    .map((e) => {
      const custody = custodyLines(r, e).map((line) => `<li>custody: ${esc(line)}</li>`);
      return `<li><b>${esc(e.id)}</b> ${esc(evidenceLine(e))}${custody.length ? `<ul>${custody.join("")}</ul>` : ""}</li>`;
    })
    .join("\n");
  const isolation = isolationPeriods(r.pages, r.generatedAtMs)
    .map(
      (p) =>
        `<li>${esc(p.host)}: ${esc(iso(p.fromMs))} → ${p.open ? "still isolated" : esc(iso(p.toMs))}</li>`,
    )
    .join("\n");
  const phases = phaseDurations(r.pages, r.generatedAtMs)
    .map((d) => `<li>${esc(d.phase)}: ${esc(iso(d.fromMs))} for ${esc(minutes(d.toMs - d.fromMs))}</li>`)
    .join("\n");
  const questions = REVIEW_QUESTIONS.map(
    (q) => `<h3>${esc(q)}</h3><p class="todo">(to be answered at the lessons-learned meeting)</p>`,
  ).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Incident ${esc(i.id)}: ${esc(i.title)}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px;text-align:left;vertical-align:top;font-size:13px}.todo{color:#777}.broken{color:#b00;font-weight:bold}</style>
</head><body>
<h1>Incident ${esc(i.id)}: ${esc(i.title)}</h1>
<p>Severity ${esc(i.severity)} · phase ${esc(i.phase)} · opened ${esc(iso(i.openedAtMs))} by ${esc(i.openedBy)} · ${r.pages.length} pages · <span class="${r.chain.ok ? "" : "broken"}">${r.chain.ok ? "chain verified intact" : `CHAIN BROKEN at page ${r.chain.seq}: ${esc(r.chain.problem)}`}</span></p>
<h2>Timeline</h2>
${timelineSvg(r)}
<table id="pages"><tr><th>page</th><th>time</th><th>author</th><th>kind</th><th>what</th></tr>
${rows}
</table>
<h2>Phases</h2><ul>${phases}</ul>
<h2>Actions</h2>
<table><tr><th>action</th><th>name</th><th>modules</th><th>targeted</th><th>succeeded</th><th>failed</th><th>found</th></tr>
${actions}
</table>
<h2>Evidence</h2><ul>${evidence || "<li>(none)</li>"}</ul>
<h2>Isolation</h2><ul>${isolation || "<li>(none)</li>"}</ul>
<h2>Post-incident review</h2>
${questions}
<p class="todo">Generated ${esc(iso(r.generatedAtMs))} by Dragnet.</p>
</body></html>
`;
}
