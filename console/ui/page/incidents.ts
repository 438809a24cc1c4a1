import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { getJson, go, postJson, useLoad, when } from "./lib.js";

// Incidents and their notebook: the pages as a timeline (who, what kind,
// when), a note signed with this console's key, phase changes, who was told,
// evidence with its custody, the chain's verification (a broken chain shown
// loudly, naming the page), and the report.

interface Incident {
  id: string;
  title: string;
  severity: string;
  phase: string;
  openedAtMs: number;
  openedBy: string;
  pages: number;
}
interface Page {
  seq: number;
  atMs: number;
  author: string;
  authorKeyId: string;
  kind: string;
  what: string;
  signed: boolean;
}
interface Evidence {
  id: string;
  hostname: string;
  agentId: string;
  path: string;
  size: number;
  sha256: string;
  receivedAtMs: number;
  collectors: string[];
  status: string;
  problem: string;
}
interface Verify {
  ok: boolean;
  pages: number;
  brokenPage: number;
  problem: string;
}

export function Incidents() {
  const { data, error, reload } = useLoad<{ incidents: Incident[]; severities: string[] }>(
    "/api/incidents",
    10_000,
  );
  const [title, setTitle] = useState("");
  const [severity, setSeverity] = useState("high");
  const [problem, setProblem] = useState("");
  const open = async (e: Event) => {
    e.preventDefault();
    try {
      const r = await postJson<{ incident: Incident }>("/api/incidents", { title, severity });
      setTitle("");
      reload();
      go(`#/incident/${r.incident.id}`);
    } catch (err) {
      setProblem((err as Error).message);
    }
  };
  return html`
    <section>
      <h1>Incidents</h1>
      ${error || problem ? html`<p class="error" role="alert">${error || problem}</p>` : null}
      <table id="incidents"><thead><tr><th>id</th><th>title</th><th>severity</th><th>phase</th><th>opened</th><th>by</th><th>pages</th></tr></thead>
        <tbody>${(data?.incidents ?? []).map(
          (
            i,
          ) => html`<tr class="clickable" onClick=${() => go(`#/incident/${i.id}`)}><td><a href=${`#/incident/${i.id}`}><code>${i.id}</code></a></td>
            <td>${i.title}</td><td><span class=${`badge severity-${i.severity}`}>${i.severity}</span></td><td>${i.phase}</td>
            <td>${when(i.openedAtMs)}</td><td>${i.openedBy}</td><td>${i.pages}</td></tr>`,
        )}</tbody></table>
      <form class="inline" onSubmit=${open}>
        <h2>Open an incident</h2>
        <label for="incident-title">Title</label><input id="incident-title" required value=${title} onInput=${(e: Event) => setTitle((e.target as HTMLInputElement).value)} />
        <label for="incident-severity">Severity</label>
        <select id="incident-severity" value=${severity} onChange=${(e: Event) => setSeverity((e.target as HTMLSelectElement).value)}>
          ${(data?.severities ?? ["high"]).map((s) => html`<option value=${s}>${s}</option>`)}</select>
        <button class="primary" type="submit">Open</button>
      </form>
    </section>
  `;
}

export function IncidentPage({ id }: { id: string }) {
  const { data, error, reload } = useLoad<{
    incident: Incident;
    pages: Page[];
    evidence: Evidence[];
    phases: string[];
  }>(`/api/incidents/${encodeURIComponent(id)}`, 5000);
  const [note, setNote] = useState("");
  const [phase, setPhase] = useState("");
  const [told, setTold] = useState({ to: "", message: "" });
  const [verify, setVerify] = useState<Verify>();
  const [problem, setProblem] = useState("");
  const act = (fn: () => Promise<unknown>) => async (e: Event) => {
    e.preventDefault();
    setProblem("");
    try {
      await fn();
      reload();
    } catch (err) {
      setProblem((err as Error).message);
    }
  };
  const i = data?.incident;
  return html`
    <section>
      <h1>${i ? html`${i.title} <span class=${`badge severity-${i.severity}`}>${i.severity}</span> <span class="badge open">${i.phase}</span>` : "Incident"}</h1>
      <p class="muted"><code>${id}</code>${i ? ` · opened ${when(i.openedAtMs)} by ${i.openedBy}` : ""} ·
        <a href=${`/api/incidents/${id}/report`} target="_blank" rel="noopener">report (HTML)</a></p>
      ${error || problem ? html`<p class="error" role="alert">${error || problem}</p>` : null}
      <div class="verify">
        <button id="verify" onClick=${() => getJson<Verify>(`/api/incidents/${id}/verify`).then(setVerify, (e: Error) => setProblem(e.message))}>Verify the notebook</button>
        ${
          verify
            ? verify.ok
              ? html`<span id="verify-result" class="badge complete">intact: ${verify.pages} pages, chain and signatures verified</span>`
              : html`<div id="verify-result" class="broken-chain" role="alert">NOTEBOOK BROKEN at page ${verify.brokenPage}: ${verify.problem}</div>`
            : null
        }
      </div>
      <h2>Timeline</h2>
      <ol id="timeline" class="timeline">${(data?.pages ?? []).map(
        (p) => html`<li class=${`page kind-${p.kind.replace(/ /g, "-")}`}>
          <div class="meta"><span class="seq">${p.seq}</span> ${when(p.atMs)} · <strong>${p.author}</strong> · <span class="badge">${p.kind}</span>${p.signed ? html` <span class="muted" title=${`signed by key ${p.authorKeyId}`}>signed</span>` : null}</div>
          <div class="what">${p.what}</div></li>`,
      )}</ol>
      <form onSubmit=${act(async () => {
        await postJson(`/api/incidents/${id}/notes`, { text: note });
        setNote("");
      })}>
        <label for="note">Add a note (signed with your key)</label>
        <textarea id="note" rows="3" required value=${note} onInput=${(e: Event) => setNote((e.target as HTMLTextAreaElement).value)}></textarea>
        <div class="buttons"><button id="add-note" class="primary" type="submit">Add note</button></div>
      </form>
      <div class="two">
        <form onSubmit=${act(() => postJson(`/api/incidents/${id}/phase`, { phase, note: "" }))}>
          <label for="phase">Phase</label>
          <select id="phase" value=${phase || i?.phase} onChange=${(e: Event) => setPhase((e.target as HTMLSelectElement).value)}>
            ${(data?.phases ?? []).map((p) => html`<option value=${p}>${p}</option>`)}</select>
          <button type="submit">Change phase</button>
        </form>
        <form onSubmit=${act(async () => {
          await postJson(`/api/incidents/${id}/notify`, told);
          setTold({ to: "", message: "" });
        })}>
          <label for="notify-to">Told whom</label><input id="notify-to" required placeholder="legal counsel, management, users…" value=${told.to} onInput=${(e: Event) => setTold({ ...told, to: (e.target as HTMLInputElement).value })} />
          <label for="notify-message">What</label><input id="notify-message" value=${told.message} onInput=${(e: Event) => setTold({ ...told, message: (e.target as HTMLInputElement).value })} />
          <button type="submit">Record notification</button>
        </form>
      </div>
      <h2>Evidence</h2>
      <table id="evidence"><thead><tr><th>host</th><th>path</th><th>size</th><th>sha256</th><th>received</th><th>collected by</th><th>status</th><th></th></tr></thead>
        <tbody>${(data?.evidence ?? []).map(
          (
            e,
          ) => html`<tr><td>${e.hostname || e.agentId}</td><td><code>${e.path}</code></td><td>${e.size}</td><td><code>${e.sha256}</code></td>
            <td>${when(e.receivedAtMs)}</td><td>${e.collectors.join(", ")}</td><td>${e.status}${e.problem ? `: ${e.problem}` : ""}</td>
            <td><a href=${`/api/evidence/${e.id}/file`} download title="its SHA-256 is checked before the download starts">download</a></td></tr>`,
        )}</tbody></table>
    </section>
  `;
}
