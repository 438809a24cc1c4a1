import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { getJson, matchesWords, when } from "./lib.js";

// The drift watches' alerts: the recent ones, then each new one as it comes
// (Server-Sent Events from the coordinator's alert stream), with their diffs.

interface AlertView {
  seq: number;
  receivedAtMs: number;
  atMs: number;
  hostname: string;
  watch: string;
  detectedBy: string;
  changes: { path: string; kind: string; what?: string[]; origin?: string; package?: string }[];
  changesOmitted?: number;
  /** A schedule's alert: the run, and the rows of its answer that appeared or vanished. */
  scheduleId?: string;
  run?: number;
  /** `what`: the row in a few words (its path, executable, package …); `row`: all of it. */
  rows: { vanished: boolean; module: string; row: string; what: string }[];
  diffs: string[];
}

export function Alerts() {
  const [alerts, setAlerts] = useState<AlertView[]>([]);
  const [error, setError] = useState("");
  const [search, setSearch] = useState("");
  const [skipUpgrades, setSkipUpgrades] = useState(false);
  useEffect(() => {
    let source: EventSource | undefined;
    let live = true;
    getJson<{ alerts: AlertView[]; cursor: number }>("/api/alerts").then(
      ({ alerts: recent, cursor }) => {
        if (!live) return;
        const sorted = [...recent].sort((a, b) => b.seq - a.seq);
        setAlerts(sorted);
        // From where the store stood when the past was read: nothing stored since is missed.
        const after = Math.max(cursor, sorted[0]?.seq ?? 0);
        source = new EventSource(`/api/alerts/live?after=${after}&from_cursor=1`);
        source.addEventListener("alert", (e) => {
          const a = JSON.parse((e as MessageEvent).data) as AlertView;
          setAlerts((prev) => (prev.some((p) => p.seq === a.seq) ? prev : [a, ...prev]));
        });
        source.addEventListener("failure", (e) => setError(JSON.parse((e as MessageEvent).data).error));
        // A lost stream is said, not retried from where it began (it would replay).
        source.onerror = () => {
          setError("the live alert stream stopped: reload the page to see new alerts");
          source?.close();
        };
      },
      (e: Error) => setError(e.message),
    );
    return () => {
      live = false;
      source?.close();
    };
  }, []);
  // "Hide package upgrades" leaves out the changes the package database vouches for, and alerts with nothing else.
  const shown = alerts
    .map((a) => (skipUpgrades ? { ...a, changes: a.changes.filter((c) => c.origin !== "package") } : a))
    .filter((a) => a.changes.length > 0 || a.changesOmitted || a.rows.length > 0)
    .filter((a) => matchesWords(search, [a.hostname, a.watch, a.changes, a.rows]));
  return html`
    <section>
      <h1>Alerts</h1>
      <p class="muted">What the agents' drift watches saw change, and what schedules' runs found new or gone, newest first; new ones appear as they come.</p>
      <label for="alert-search">Search</label>
      <input id="alert-search" placeholder="host, watch, path" value=${search} onInput=${(e: Event) => setSearch((e.target as HTMLInputElement).value)} />
      <label class="inline"><input id="skip-upgrades" type="checkbox" checked=${skipUpgrades} onChange=${(e: Event) => setSkipUpgrades((e.target as HTMLInputElement).checked)} /> Hide package upgrades (files now as their package records them)</label>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      <p class="counts"><strong>${shown.length}</strong> alert${shown.length === 1 ? "" : "s"}</p>
      <ol id="alerts" class="cards">
        ${shown.map(
          (a) => html`<li key=${a.seq} class="card">
            <div><strong>${a.hostname}</strong> · ${a.scheduleId ? "schedule" : "watch"} <strong>${a.watch}</strong> <span class="muted">(${a.scheduleId ? `run ${a.run}` : a.detectedBy}) · ${when(a.atMs || a.receivedAtMs)}</span></div>
            ${a.rows.length ? html`<table><tbody>${a.rows.map((r) => html`<tr><td><span class=${`badge change-${r.vanished ? "removed" : "added"}`}>${r.vanished ? "vanished" : "new"}</span></td><td><code>${r.what}</code><div class="muted row-detail" title=${r.row}>${r.row}</div></td></tr>`)}</tbody></table>` : null}
            <table><tbody>${a.changes.map((c) => html`<tr><td><span class=${`badge change-${c.kind}`}>${c.kind}</span></td><td><code>${c.path}</code></td><td>${(c.what ?? []).join(", ")}</td><td>${c.origin ? html`<span class=${`badge origin-${c.origin}`} title=${c.package || "no package owns this file"}>${c.origin}${c.package ? ` · ${c.package}` : ""}</span>` : null}</td></tr>`)}</tbody></table>
            ${a.changesOmitted ? html`<p class="muted">${a.changesOmitted} more changes left out</p>` : null}
            ${a.diffs.map((d) => html`<pre class="diff">${d}</pre>`)}
          </li>`,
        )}
      </ol>
    </section>
  `;
}
