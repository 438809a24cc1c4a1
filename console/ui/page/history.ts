import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { go, matchesWords, useLoad, when } from "./lib.js";

// Every past action, or those waiting for a second signature, searchable by
// any of their words: name, module, signer, target, incident, date, state.

export interface ActionView {
  id: string;
  name: string;
  target: string;
  modules: string[];
  signers: string[];
  state: string;
  submittedAtMs: number;
  expiresAtMs: number;
  incidentId: string;
  weight: number;
  requiredWeight: number;
  targeted: number;
  answered: number;
  found: number;
  failed: number;
  refused: number;
  timedOut: number;
  expired: number;
  cancelled: number;
  waiting: number;
  waitingOffline: number;
  percentSwept: number;
}

export function History({ pending }: { pending: boolean }) {
  const { data, error } = useLoad<{ actions: ActionView[] }>(`/api/actions?pending=${pending ? 1 : 0}`, 3000);
  const [search, setSearch] = useState("");
  const actions = data?.actions ?? [];
  const shown = actions.filter((a) =>
    matchesWords(search, [
      a.id,
      a.name,
      a.target,
      a.state,
      a.incidentId,
      a.modules,
      a.signers,
      when(a.submittedAtMs),
    ]),
  );
  return html`
    <section>
      <h1>${pending ? "Waiting for approval" : "Actions"}</h1>
      ${pending ? html`<p class="muted">Actions signed by one investigator that need a second signature. Nothing has run yet. Review one to see exactly what runs where, then approve it with your key.</p>` : null}
      <label for="search">Search</label>
      <input id="search" placeholder="name, module, signer, target, incident, date" value=${search}
        onInput=${(e: Event) => setSearch((e.target as HTMLInputElement).value)} />
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      <p class="counts"><strong>${shown.length}</strong> of ${actions.length}</p>
      <div class="scroller">
      <table id="actions">
        <thead><tr><th>submitted</th><th>name</th><th>target</th><th>modules</th><th>signed by</th><th>state</th>
          <th>targeted</th><th>answered</th><th>failed</th><th>found</th><th>id</th>${pending ? html`<th></th>` : null}</tr></thead>
        <tbody>
          ${shown.map(
            (
              a,
            ) => html`<tr key=${a.id} class="clickable" onClick=${() => go(pending ? `#/approve/${a.id}` : `#/action/${a.id}`)}>
              <td>${when(a.submittedAtMs)}</td>
              <td><a href=${pending ? `#/approve/${a.id}` : `#/action/${a.id}`}>${a.name}</a></td>
              <td><code>${a.target}</code></td>
              <td>${a.modules.join(", ")}</td>
              <td>${a.signers.join(", ")}${a.requiredWeight ? ` (${a.weight} of ${a.requiredWeight})` : ""}</td>
              <td><span class=${`badge ${a.state.replace(" ", "-")}`}>${a.state}</span></td>
              <td>${a.targeted}</td><td>${a.answered}</td><td>${a.failed || ""}</td><td>${a.found || ""}</td>
              <td><code>${a.id.slice(0, 12)}</code></td>
              ${pending ? html`<td><button class="primary small">Review</button></td>` : null}
            </tr>`,
          )}
        </tbody>
      </table>
      </div>
    </section>
  `;
}
