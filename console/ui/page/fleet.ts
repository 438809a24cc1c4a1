import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { ago, useLoad, when } from "./lib.js";

// The fleet at a glance: counts by status, and every agent with what matters
// about it, filtered by a target expression the coordinator checks as you type.

interface Agent {
  id: string;
  hostname: string;
  os: string;
  osRelease: string;
  version: string;
  addresses: string[];
  tags: Record<string, string>;
  status: string;
  isolated: boolean;
  isolatedSinceMs: number;
  isolationActionId: string;
  lastSeenMs: number;
  upgrade: string;
  problems: string[];
}

export function Fleet() {
  const [target, setTarget] = useState("");
  const [typed, setTyped] = useState("");
  const { data, error } = useLoad<{ agents: Agent[] }>(
    `/api/agents?target=${encodeURIComponent(target)}`,
    5000,
  );
  const agents = data?.agents ?? [];
  const counts: Record<string, number> = {};
  for (const a of agents) counts[a.status] = (counts[a.status] ?? 0) + 1;
  const isolated = agents.filter((a) => a.isolated).length;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return html`
    <section>
      <h1>Fleet</h1>
      <label for="target">Target</label>
      <input id="target" placeholder='all, os == "linux", tags.env == "prod"' value=${typed}
        onInput=${(e: Event) => {
          const v = (e.target as HTMLInputElement).value;
          setTyped(v);
          clearTimeout(timer);
          timer = setTimeout(() => setTarget(v), 200);
        }} />
      ${error ? html`<pre class="error" role="alert">${error}</pre>` : null}
      <p class="counts">
        <strong>${agents.length}</strong> agents:
        ${["online", "idle", "offline"].map((s) => html`<span class=${`badge ${s}`}>${counts[s] ?? 0} ${s}</span>`)}
        ${isolated ? html`<span class="badge isolated">${isolated} isolated</span>` : null}
      </p>
      <div class="scroller">
      <table id="agents">
        <thead><tr><th>host</th><th>status</th><th>isolation</th><th>os</th><th>version</th><th>addresses</th><th>tags</th><th>last seen</th><th>problems</th></tr></thead>
        <tbody>
          ${agents.map(
            (a) => html`<tr key=${a.id} title=${a.id}>
              <td>${a.hostname}</td>
              <td><span class=${`badge ${a.status}`}>${a.status}</span></td>
              <td>${a.isolated ? html`<span class="badge isolated">isolated</span> ${a.isolatedSinceMs ? html`<span class="muted">since ${when(a.isolatedSinceMs)}</span>` : null}` : ""}</td>
              <td>${a.os} ${a.osRelease}</td>
              <td>${a.version}${a.upgrade ? ` (${a.upgrade})` : ""}</td>
              <td>${a.addresses.join(" ")}</td>
              <td>${Object.entries(a.tags)
                .map(([k, v]) => `${k}=${v}`)
                .join(" ")}</td>
              <td>${ago(a.lastSeenMs)}</td>
              <td class="problems">${a.problems.join("; ")}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      </div>
    </section>
  `;
}
