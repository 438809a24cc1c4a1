import { html } from "htm/preact";
import { useMemo, useState } from "preact/hooks";
import { ago, type Column, type Row, useDebounced, useLoad, VirtualTable, when } from "./lib.js";

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

/** An agent as a row: text to sort and filter by; badges drawn by the columns. */
function rowOf(a: Agent): Row {
  return {
    id: a.id,
    host: a.hostname,
    status: a.status,
    isolation: a.isolated ? `isolated${a.isolatedSinceMs ? ` since ${when(a.isolatedSinceMs)}` : ""}` : "",
    os: `${a.os} ${a.osRelease}`,
    version: `${a.version}${a.upgrade ? ` (${a.upgrade})` : ""}`,
    addresses: a.addresses.join(" "),
    tags: Object.entries(a.tags)
      .map(([k, v]) => `${k}=${v}`)
      .join(" "),
    lastSeenMs: a.lastSeenMs,
    problems: a.problems.join("; "),
  };
}

const COLUMNS: Column[] = [
  { key: "host", header: "host" },
  {
    key: "status",
    header: "status",
    render: (r) => html`<span class=${`badge ${r.status}`}>${r.status}</span>`,
  },
  {
    key: "isolation",
    header: "isolation",
    render: (r) =>
      r.isolation
        ? html`<span class="badge isolated">isolated</span> <span class="muted">${String(r.isolation).replace(/^isolated ?/, "")}</span>`
        : "",
  },
  { key: "os", header: "os" },
  { key: "version", header: "version" },
  { key: "addresses", header: "addresses" },
  { key: "tags", header: "tags" },
  { key: "lastSeenMs", header: "last seen", render: (r) => ago(Number(r.lastSeenMs)) },
  { key: "problems", header: "problems", render: (r) => html`<span class="problems">${r.problems}</span>` },
];

export function Fleet() {
  const [typed, setTyped] = useState("");
  const target = useDebounced(typed, 200);
  const { data, error } = useLoad<{ agents: Agent[] }>(
    `/api/agents?target=${encodeURIComponent(target)}`,
    5000,
  );
  const agents = data?.agents ?? [];
  const counts: Record<string, number> = {};
  for (const a of agents) counts[a.status] = (counts[a.status] ?? 0) + 1;
  const isolated = agents.filter((a) => a.isolated).length;
  const rows = useMemo(() => agents.map(rowOf), [data]);
  return html`
    <section>
      <h1>Fleet</h1>
      <label for="target">Target</label>
      <input id="target" placeholder='all, os == "linux", tags.env == "prod"' value=${typed}
        onInput=${(e: Event) => setTyped((e.target as HTMLInputElement).value)} />
      ${error ? html`<pre class="error" role="alert">${error}</pre>` : null}
      <p class="counts">
        <strong>${agents.length}</strong> agents:
        ${["online", "idle", "offline"].map((s) => html`<span class=${`badge ${s}`}>${counts[s] ?? 0} ${s}</span>`)}
        ${isolated ? html`<span class="badge isolated">${isolated} isolated</span>` : null}
      </p>
      <${VirtualTable} id="agents" columns=${COLUMNS} rows=${rows} height=${560} />
    </section>
  `;
}
