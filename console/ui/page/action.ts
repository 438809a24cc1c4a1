import { html } from "htm/preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { ActionView } from "./history.js";
import { type Column, cell, matchesWords, type Row, VirtualTable, when } from "./lib.js";

// One action, live: where it stands (targeted, answered, failed, refused,
// timed out, expired, still waiting, % swept), each agent's state and why,
// and every row the agents sent, in a table that stays responsive at 10,000
// rows — or stacked: identical rows across hosts grouped, rarest first, so
// the one odd host stands out.

interface AgentState {
  agentId: string;
  hostname: string;
  state: string;
  found: boolean;
  reason: string;
  notes: string[];
  late: boolean;
}

/** Rows grouped by the chosen columns, with how many hosts (and which) have each; rarest first. */
function stack(rows: Row[], keys: string[]): Row[] {
  const groups = new Map<string, { row: Row; hosts: Set<string> }>();
  for (const r of rows) {
    const k = JSON.stringify(keys.map((c) => cell(r, c)));
    let g = groups.get(k);
    if (!g) {
      g = { row: Object.fromEntries(keys.map((c) => [c, cell(r, c)])), hosts: new Set() };
      groups.set(k, g);
    }
    g.hosts.add(r.agent?.hostname ?? "");
  }
  return [...groups.values()]
    .sort((a, b) => a.hosts.size - b.hosts.size)
    .map((g) => ({ hosts: g.hosts.size, hostnames: [...g.hosts].sort().join(", "), ...g.row }));
}

export function ActionPage({ id }: { id: string }) {
  const [summary, setSummary] = useState<ActionView>();
  const [columns, setColumns] = useState<Column[]>([]);
  const [agents, setAgents] = useState<Map<string, AgentState>>(new Map());
  const all = useRef<Row[]>([]);
  const [count, setCount] = useState(0);
  const [live, setLive] = useState(true);
  const [failure, setFailure] = useState("");
  const [filter, setFilter] = useState("");
  const [stacked, setStacked] = useState(false);
  const [stackBy, setStackBy] = useState<string[] | undefined>();

  useEffect(() => {
    all.current = [];
    setCount(0);
    setAgents(new Map());
    setLive(true);
    const source = new EventSource(`/api/actions/${encodeURIComponent(id)}/live`);
    // Batches that come close together are drawn once.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const draw = () => {
      timer ??= setTimeout(() => {
        timer = undefined;
        setCount(all.current.length);
      }, 50);
    };
    source.addEventListener("columns", (e) => setColumns(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("summary", (e) => setSummary(JSON.parse((e as MessageEvent).data)));
    source.addEventListener("agents", (e) => {
      const states = JSON.parse((e as MessageEvent).data) as AgentState[];
      setAgents((prev) => {
        const next = new Map(prev);
        for (const s of states) next.set(s.agentId, s);
        return next;
      });
    });
    source.addEventListener("rows", (e) => {
      all.current = all.current.concat(JSON.parse((e as MessageEvent).data) as Row[]);
      draw();
    });
    source.addEventListener("failure", (e) => setFailure(JSON.parse((e as MessageEvent).data).error));
    source.addEventListener("done", (e) => {
      setSummary(JSON.parse((e as MessageEvent).data));
      setLive(false);
      source.close();
    });
    // The server ends the stream when the action completes or waits only for offline agents.
    source.onerror = () => {
      setLive(false);
      source.close();
    };
    return () => {
      source.close();
      clearTimeout(timer);
    };
  }, [id]);

  const rows = all.current;
  const moduleColumns = columns.filter((c) => c.key !== "agent.hostname");
  const keys = stackBy ?? moduleColumns.map((c) => c.key);
  const filtered = useMemo(
    () =>
      filter
        ? rows.filter((r) => matchesWords(filter, [r.agent?.hostname, ...moduleColumns.map((c) => r[c.key])]))
        : rows,
    [count, filter, columns],
  );
  const stacks = useMemo(() => (stacked ? stack(filtered, keys) : []), [stacked, filtered, keys.join()]);
  const s = summary;
  // Sorted once per batch of answers, not on every draw.
  const problems = useMemo(
    () =>
      [...agents.values()]
        .filter((a) => a.state !== "success" || a.notes.length)
        .sort((a, b) => a.hostname.localeCompare(b.hostname)),
    [agents],
  );
  return html`
    <section>
      <h1>${s?.name ?? "Action"} ${s ? html`<span class=${`badge ${s.state.replace(" ", "-")}`}>${live && s.state === "open" ? "running" : s.state}</span>` : null}</h1>
      <p class="muted"><code>${id}</code>${s ? html` · target <code>${s.target}</code> · ${s.modules.join(", ")} · signed by ${s.signers.join(", ")} · submitted ${when(s.submittedAtMs)}${s.incidentId ? ` · incident ${s.incidentId}` : ""}` : null}</p>
      ${failure ? html`<p class="error" role="alert">${failure}</p>` : null}
      ${
        s
          ? html`<div class="tiles" id="summary">
            <div class="tile"><span class="n">${s.targeted}</span> targeted</div>
            <div class="tile good"><span class="n">${s.answered}</span> answered</div>
            <div class=${`tile ${s.found ? "found" : ""}`}><span class="n">${s.found}</span> found</div>
            <div class=${`tile ${s.failed ? "bad" : ""}`}><span class="n">${s.failed}</span> failed</div>
            <div class=${`tile ${s.refused ? "bad" : ""}`}><span class="n">${s.refused}</span> refused</div>
            <div class=${`tile ${s.timedOut ? "bad" : ""}`}><span class="n">${s.timedOut}</span> timed out</div>
            <div class="tile"><span class="n">${s.expired}</span> expired</div>
            <div class="tile"><span class="n">${s.waiting}</span> still waiting${s.waitingOffline ? ` (${s.waitingOffline} offline)` : ""}</div>
            <div class="tile swept"><span class="n">${s.percentSwept}%</span> swept
              <div class="bar"><div style=${`width:${s.percentSwept}%`}></div></div></div>
          </div>
          ${s.state === "pending approval" ? html`<p class="warning">Waiting for a second signature (${s.weight} of ${s.requiredWeight}): nothing was sent. <a href=${`#/approve/${id}`}>Review and approve</a></p>` : null}`
          : html`<p>loading…</p>`
      }
      ${
        problems.length
          ? html`<h2>Agents that did not simply answer</h2>
          <table id="agent-states"><thead><tr><th>host</th><th>state</th><th>why</th></tr></thead><tbody>
          ${problems.map(
            (
              a,
            ) => html`<tr><td>${a.hostname || a.agentId}</td><td><span class=${`badge state-${a.state}`}>${a.state}${a.late ? " (late)" : ""}</span></td>
            <td>${[a.reason, ...a.notes].filter(Boolean).join("; ")}</td></tr>`,
          )}
          </tbody></table>`
          : null
      }
      <h2>Results <span class="muted" id="row-count">${count.toLocaleString("en-US")} row${count === 1 ? "" : "s"}${filter ? `, ${filtered.length.toLocaleString("en-US")} shown` : ""}</span></h2>
      <div class="toolbar">
        <label for="filter">Filter</label>
        <input id="filter" placeholder="words in any column" value=${filter} onInput=${(e: Event) => setFilter((e.target as HTMLInputElement).value)} />
        <button id="stack" class=${stacked ? "current" : ""} aria-pressed=${stacked} onClick=${() => setStacked(!stacked)}>${stacked ? "Show every row" : "Stack identical rows"}</button>
        <a class="button" href=${`/api/actions/${id}/export?format=csv`} download>CSV</a>
        <a class="button" href=${`/api/actions/${id}/export?format=ndjson`} download>NDJSON</a>
      </div>
      ${
        stacked
          ? html`<fieldset class="stack-by"><legend>Identical means the same</legend>${moduleColumns.map(
              (c) => html`<label><input type="checkbox" checked=${keys.includes(c.key)}
              onChange=${(e: Event) => setStackBy((e.target as HTMLInputElement).checked ? [...keys, c.key] : keys.filter((k) => k !== c.key))} /> ${c.header}</label>`,
            )}</fieldset>
          <p class="muted">${stacks.length} distinct, rarest first: a row only one host has is at the top.</p>
          <${VirtualTable} id="stacks" columns=${[{ key: "hosts", header: "hosts" }, { key: "hostnames", header: "which" }, ...moduleColumns.filter((c) => keys.includes(c.key))]} rows=${stacks}
            rowClass=${(r: Row) => (r.hosts === 1 && stacks.length > 1 ? "rare" : "")} />`
          : html`<${VirtualTable} id="results" columns=${columns} rows=${filtered} />`
      }
    </section>
  `;
}
