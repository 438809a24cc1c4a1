import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";

// The web console's page: the fleet at a glance — counts by status, and every
// agent with what matters about it, filtered by a target expression the
// coordinator checks as you type. It talks to the local `dragnet ui` server
// only (its CSP allows nothing else).

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
  lastSeenMs: number;
  upgrade: string;
  problems: string[];
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

function Fleet() {
  const [target, setTarget] = useState("");
  const [agents, setAgents] = useState<Agent[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    const load = async () => {
      const r = await fetch(`/api/agents?target=${encodeURIComponent(target)}`);
      const body = await r.json();
      if (!live) return;
      if (r.ok) {
        setAgents(body.agents);
        setError("");
      } else setError(body.error);
    };
    const timer = setTimeout(load, 200);
    const refresh = setInterval(load, 5000);
    return () => {
      live = false;
      clearTimeout(timer);
      clearInterval(refresh);
    };
  }, [target]);
  const counts: Record<string, number> = {};
  for (const a of agents) counts[a.status] = (counts[a.status] ?? 0) + 1;
  return html`
    <section>
      <h1>Fleet</h1>
      <label for="target">Target</label>
      <input id="target" placeholder='all, os == "linux", tags.env == "prod"' value=${target}
        onInput=${(e: Event) => setTarget((e.target as HTMLInputElement).value)} />
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      <p class="counts">
        <strong>${agents.length}</strong> agents:
        ${["online", "idle", "offline"].map(
          (s) => html`<span class=${`badge ${s}`}>${counts[s] ?? 0} ${s}</span>`,
        )}
        ${agents.some((a) => a.isolated) ? html`<span class="badge isolated">${agents.filter((a) => a.isolated).length} isolated</span>` : null}
      </p>
      <table id="agents">
        <thead><tr><th>host</th><th>status</th><th>os</th><th>version</th><th>addresses</th><th>tags</th><th>last seen</th><th>problems</th></tr></thead>
        <tbody>
          ${agents.map(
            (a) => html`<tr key=${a.id} title=${a.id}>
              <td>${a.hostname}${a.isolated ? html` <span class="badge isolated">isolated</span>` : null}</td>
              <td><span class=${`badge ${a.status}`}>${a.status}</span></td>
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
    </section>
  `;
}

render(html`<${Fleet} />`, document.getElementById("app")!);
