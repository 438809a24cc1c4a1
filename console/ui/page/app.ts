import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { ActionPage } from "./action.js";
import { Alerts } from "./alerts.js";
import { Approve } from "./approve.js";
import { Audit } from "./audit.js";
import { Fleet } from "./fleet.js";
import { History } from "./history.js";
import { IncidentPage, Incidents } from "./incidents.js";
import { useLoad } from "./lib.js";
import { NewAction, RESPONSES, SWEEPS } from "./sweep.js";

// The web console's page: a tab per place (fleet, new sweep, response,
// actions, approvals, alerts, incidents, audit) and a page per action and
// incident, addressed by the URL's #fragment so that Back and links work. It
// talks to the local `dragnet ui` server only (its CSP allows nothing else).

const TABS = [
  ["fleet", "Fleet"],
  ["sweep", "New sweep"],
  ["respond", "Response"],
  ["actions", "Actions"],
  ["approvals", "Approvals"],
  ["alerts", "Alerts"],
  ["incidents", "Incidents"],
  ["audit", "Audit"],
] as const;

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function App() {
  const hash = useHash();
  const { data: me } = useLoad<{ name: string; keyId: string; coordinator: string }>("/api/me");
  const { data: pending } = useLoad<{ actions: unknown[] }>("/api/actions?pending=1", 5000);
  const [page = "fleet", id = ""] = hash
    .replace(/^#\/?/, "")
    .split("/")
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return "";
      }
    });
  const tab =
    page === "action"
      ? "actions"
      : page === "approve"
        ? "approvals"
        : page === "incident"
          ? "incidents"
          : page;
  const waiting = pending?.actions.length ?? 0;
  const body =
    page === "sweep"
      ? html`<${NewAction} key="sweep" commands=${SWEEPS} title="New sweep" me=${me?.name ?? "you"} />`
      : page === "respond"
        ? html`<${NewAction} key="respond" commands=${RESPONSES} title="Response" me=${me?.name ?? "you"} />`
        : page === "actions"
          ? html`<${History} key="actions" pending=${false} />`
          : page === "approvals"
            ? html`<${History} key="approvals" pending=${true} />`
            : page === "action"
              ? html`<${ActionPage} key=${id} id=${id} />`
              : page === "approve"
                ? html`<${Approve} key=${id} id=${id} />`
                : page === "alerts"
                  ? html`<${Alerts} />`
                  : page === "incidents"
                    ? html`<${Incidents} />`
                    : page === "incident"
                      ? html`<${IncidentPage} key=${id} id=${id} />`
                      : page === "audit"
                        ? html`<${Audit} />`
                        : html`<${Fleet} />`;
  return html`
    <header>
      <span class="brand">Dragnet</span>
      <nav>${TABS.map(
        ([
          p,
          label,
        ]) => html`<a id=${`nav-${p}`} href=${`#/${p}`} class=${p === tab ? "current" : ""} aria-current=${p === tab ? "page" : undefined}>
          ${label}${p === "approvals" && waiting ? html` <span class="count" title="waiting for a second signature">${waiting}</span>` : null}</a>`,
      )}</nav>
      <span class="me" title=${me ? `key ${me.keyId}, coordinator ${me.coordinator}` : ""}>${me ? html`signing as <strong>${me.name}</strong>` : null}</span>
    </header>
    <main>${body}</main>
  `;
}

render(html`<${App} />`, document.getElementById("app")!);
