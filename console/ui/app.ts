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

interface Action {
  id: string;
  name: string;
  target: string;
  modules: string[];
  signers: string[];
  state: string;
  submittedAtMs: number;
  incidentId: string;
  weight: number;
  requiredWeight: number;
  targeted: number;
  answered: number;
  found: number;
  failed: number;
}

const when = (ms: number) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);

/** Past actions (or those waiting for a second signature), searchable by any of their words. */
function Actions({ pending }: { pending: boolean }) {
  const [actions, setActions] = useState<Action[]>([]);
  const [search, setSearch] = useState("");
  useEffect(() => {
    let live = true;
    const load = async () => {
      const r = await fetch(`/api/actions?pending=${pending ? 1 : 0}`);
      if (r.ok && live) setActions((await r.json()).actions);
    };
    void load();
    const refresh = setInterval(load, 3000);
    return () => {
      live = false;
      clearInterval(refresh);
    };
  }, [pending]);
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = actions.filter((a) => {
    const text = [
      a.id,
      a.name,
      a.target,
      a.state,
      a.incidentId,
      ...a.modules,
      ...a.signers,
      when(a.submittedAtMs),
    ]
      .join(" ")
      .toLowerCase();
    return words.every((w) => text.includes(w));
  });
  return html`
    <section>
      <h1>${pending ? "Waiting for approval" : "Actions"}</h1>
      <label for="search">Search</label>
      <input id="search" placeholder="name, module, signer, target, incident, date" value=${search}
        onInput=${(e: Event) => setSearch((e.target as HTMLInputElement).value)} />
      <p class="counts"><strong>${shown.length}</strong> of ${actions.length}</p>
      <table id="actions">
        <thead><tr><th>submitted</th><th>name</th><th>target</th><th>modules</th><th>signed by</th><th>state</th>
          <th>targeted</th><th>answered</th><th>failed</th><th>found</th><th>id</th></tr></thead>
        <tbody>
          ${shown.map(
            (a) => html`<tr key=${a.id}>
              <td>${when(a.submittedAtMs)}</td>
              <td>${a.name}</td>
              <td><code>${a.target}</code></td>
              <td>${a.modules.join(", ")}</td>
              <td>${a.signers.join(", ")}${a.requiredWeight ? ` (${a.weight} of ${a.requiredWeight})` : ""}</td>
              <td><span class=${`badge ${a.state.replace(" ", "-")}`}>${a.state}</span></td>
              <td>${a.targeted}</td><td>${a.answered}</td><td>${a.failed || ""}</td><td>${a.found || ""}</td>
              <td><code>${a.id.slice(0, 12)}</code></td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
  `;
}

const PAGES = { fleet: "Fleet", actions: "Actions", approvals: "Approvals" } as const;
type PageName = keyof typeof PAGES;

function App() {
  const [page, setPage] = useState<PageName>("fleet");
  return html`
    <nav>
      ${(Object.keys(PAGES) as PageName[]).map(
        (
          p,
        ) => html`<button id=${`nav-${p}`} class=${p === page ? "current" : ""} aria-current=${p === page ? "page" : undefined}
          onClick=${() => setPage(p)}>${PAGES[p]}</button>`,
      )}
    </nav>
    ${page === "fleet" ? html`<${Fleet} />` : html`<${Actions} pending=${page === "approvals"} />`}
  `;
}

render(html`<${App} />`, document.getElementById("app")!);
