import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { matchesWords, useLoad, when } from "./lib.js";

// The coordinator's audit log (who asked for what, what was refused and why),
// filterable, with the state of its sealed chains.

interface Entry {
  atMs: number;
  actor: string;
  event: string;
  actionId: string;
  agentId: string;
  code: string;
  message: string;
}
interface Chain {
  chain: string;
  ok: boolean;
  entries: number;
  brokenAt: number;
  problem: string;
}

export function Audit() {
  const { data, error } = useLoad<{ entries: Entry[]; chains: Chain[] }>("/api/audit", 10_000);
  const [search, setSearch] = useState("");
  const entries = (data?.entries ?? []).filter((e) =>
    matchesWords(search, [e.actor, e.event, e.actionId, e.agentId, e.code, e.message, when(e.atMs)]),
  );
  return html`
    <section>
      <h1>Audit log</h1>
      <p id="chains">${(data?.chains ?? []).map((c) =>
        c.ok
          ? html`<span class="badge complete">${c.chain}: intact, ${c.entries} entries</span>`
          : html`<span class="badge offline broken" role="alert">${c.chain}: BROKEN at entry ${c.brokenAt}: ${c.problem}</span>`,
      )}</p>
      <label for="audit-search">Filter</label>
      <input id="audit-search" placeholder="who, event, action, agent, code, words" value=${search} onInput=${(e: Event) => setSearch((e.target as HTMLInputElement).value)} />
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      <p class="counts"><strong>${entries.length}</strong> of ${data?.entries.length ?? 0}</p>
      <div class="scroller">
      <table id="audit"><thead><tr><th>time</th><th>who</th><th>event</th><th>action</th><th>agent</th><th>code</th><th>what</th></tr></thead>
        <tbody>${entries.map(
          (
            e,
          ) => html`<tr class=${e.code ? "refused" : ""}><td>${when(e.atMs)}</td><td>${e.actor}</td><td>${e.event}</td>
            <td>${e.actionId ? html`<a href=${`#/action/${e.actionId}`}><code>${e.actionId.slice(0, 12)}</code></a>` : ""}</td>
            <td><code>${e.agentId.slice(0, 12)}</code></td><td>${e.code}</td><td>${e.message}</td></tr>`,
        )}</tbody></table>
      </div>
    </section>
  `;
}
