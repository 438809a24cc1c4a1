import { html } from "htm/preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Shown } from "../wire.js";

export type { Shown };

// What every page shares: talking to the local server, times and cells in
// words, and the table that stays fast at 10,000 rows.

/** A GET of the page's API: the JSON, or an Error with the server's words. */
export async function getJson<T>(path: string): Promise<T> {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ?? `${r.status}`);
  return body as T;
}

/** A POST of JSON (the server checks the page's Origin on it). */
export async function postJson<T>(path: string, value: unknown): Promise<T> {
  const r = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(value),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ?? `${r.status}`);
  return body as T;
}

/** Data from a GET, reloaded every `everyMs` (0: once) and when the path changes; nothing for no path. */
export function useLoad<T>(
  path: string | undefined,
  everyMs = 0,
): { data?: T; error: string; reload(): void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState("");
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === undefined) {
      setData(undefined);
      setError("");
      return;
    }
    let live = true;
    const load = () =>
      getJson<T>(path).then(
        (d) => {
          if (live) {
            setData(d);
            setError("");
          }
        },
        (e: Error) => live && setError(e.message),
      );
    void load();
    const timer = everyMs ? setInterval(load, everyMs) : undefined;
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [path, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/** A time as people read it; nothing for 0 or a time no Date holds (an agent's word is not trusted). */
/** The value once it has stopped changing for `ms` (what is typed, before asking the server). */
export function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

export const when = (ms: number) =>
  Number.isFinite(ms) && ms > 0 && ms < 8.64e15
    ? new Date(ms).toISOString().replace("T", " ").slice(0, 19)
    : "";

export function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

export const go = (hash: string) => {
  location.hash = hash;
};

export type Row = Record<string, unknown> & { agent?: { id: string; hostname: string } };
export interface Column {
  key: string;
  header: string;
  /** How to draw the cell, when not as its text (sorting still goes by the text). */
  render?: (row: Row) => unknown;
}

/** A row's cell as text, as the CLI's CSV shows it. */
export function cell(row: Row, key: string): string {
  if (key === "agent.hostname") return row.agent?.hostname ?? "";
  const v = row[key];
  if (v === undefined || v === null) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

const ROW_HEIGHT = 28;
/** Rows drawn beyond the visible ones, above and below. */
const OVERSCAN = 12;

/**
 * A table that draws only the rows in view (and a few more): 10,000 rows cost
 * what 40 do. Sorted by a click on a header (again: descending).
 */
export function VirtualTable(props: {
  id: string;
  columns: Column[];
  rows: Row[];
  height?: number;
  onRow?: (row: Row) => void;
  /** A class for a row (e.g. to mark the rare ones). */
  rowClass?: (row: Row) => string;
}) {
  const { columns, rows } = props;
  const height = props.height ?? 480;
  const [top, setTop] = useState(0);
  const [sort, setSort] = useState<{ key: string; desc: boolean } | undefined>();
  const box = useRef<HTMLDivElement>(null);
  const sorted = useMemo(() => {
    if (!sort) return rows;
    const numeric = rows.every((r) => {
      const c = cell(r, sort.key);
      return c === "" || !Number.isNaN(Number(c));
    });
    const out = [...rows].sort((a, b) => {
      const x = cell(a, sort.key);
      const y = cell(b, sort.key);
      return numeric ? Number(x) - Number(y) : x.localeCompare(y);
    });
    return sort.desc ? out.reverse() : out;
  }, [rows, sort]);
  // Fewer rows than before (a filter): the browser clamps its scroll position, and so does this.
  const at = Math.min(top, Math.max(0, sorted.length * ROW_HEIGHT - height));
  const first = Math.max(0, Math.floor(at / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(sorted.length, Math.ceil((at + height) / ROW_HEIGHT) + OVERSCAN);
  const slice = sorted.slice(first, last);
  return html`
    <div class="scroller" ref=${box} style=${`max-height:${height}px`}
      onScroll=${(e: Event) => setTop((e.target as HTMLElement).scrollTop)}>
      <table id=${props.id} aria-rowcount=${sorted.length}>
        <thead><tr>${columns.map(
          (
            c,
          ) => html`<th aria-sort=${sort?.key === c.key ? (sort.desc ? "descending" : "ascending") : "none"}>
            <button class="sort" onClick=${() => setSort({ key: c.key, desc: sort?.key === c.key ? !sort.desc : false })}>
              ${c.header}${sort?.key === c.key ? (sort.desc ? " ▼" : " ▲") : ""}</button></th>`,
        )}</tr></thead>
        <tbody>
          ${first > 0 ? html`<tr class="spacer" style=${`height:${first * ROW_HEIGHT}px`}><td colspan=${columns.length}></td></tr>` : null}
          ${slice.map(
            (
              r,
              i,
            ) => html`<tr key=${first + i} class=${`${props.onRow ? "clickable" : ""} ${props.rowClass?.(r) ?? ""}`}
              onClick=${props.onRow ? () => props.onRow!(r) : undefined}>
              ${columns.map((c) => html`<td>${c.render ? c.render(r) : cell(r, c.key)}</td>`)}</tr>`,
          )}
          ${last < sorted.length ? html`<tr class="spacer" style=${`height:${(sorted.length - last) * ROW_HEIGHT}px`}><td colspan=${columns.length}></td></tr>` : null}
        </tbody>
      </table>
    </div>
  `;
}

/** Words a person can search for in any of these values. */
export function matchesWords(search: string, values: unknown[]): boolean {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const text = values
    .map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v ?? "")))
    .join(" ")
    .toLowerCase();
  return words.every((w) => text.includes(w));
}

export function ShownAction({ action }: { action: Shown }) {
  const more = action.agents.count - action.agents.hosts.length;
  return html`
    <dl class="shown">
      <dt>Runs on</dt>
      <dd><strong>${action.agents.count} agent${action.agents.count === 1 ? "" : "s"}</strong>
        ${action.agents.offline ? ` (${action.agents.offline} offline: they get it if they return before it expires)` : ""}:
        ${action.agents.hosts.map((h) => html`<span class=${`badge ${h.status}`}>${h.hostname}</span>`)}
        ${more > 0 ? ` and ${more} more` : ""}
        <div class="muted">target <code>${action.target}</code></div></dd>
      <dt>Does</dt>
      <dd><ol class="operations">${action.operations.map(
        (op) => html`<li><strong>${op.module}</strong> <code class="params">${op.parameters}</code></li>`,
      )}</ol></dd>
      <dt>Name</dt><dd>${action.name}</dd>
      ${action.description ? html`<dt>Why</dt><dd>${action.description}</dd>` : null}
      <dt>Incident</dt><dd>${action.incidentId || html`<span class="muted">none</span>`}</dd>
      <dt>Valid</dt><dd>${action.validFrom} to ${action.expires} (${action.expiresIn} left); each agent may take ${action.timeout}</dd>
    </dl>
    ${action.approval ? html`<p class="warning" role="status">${action.approval}</p>` : null}
  `;
}
