import type { Page } from "./journal.js";

// What a notebook page says, for people: each kind of page (a note, a phase
// change, an action, evidence, custody…) as one line. The report and the
// console's `incident show` both print pages this way.

/** An incident's phases, in the order they usually come (NIST SP 800-61), and its severities. */
export const PHASES = [
  "preparation",
  "identification",
  "notification",
  "containment",
  "eradication",
  "recovery",
  "post-incident review",
  "lessons learned",
] as const;

export const SEVERITIES = ["low", "medium", "high", "critical"];

/** A page's content as the coordinator wrote it (JSON), or nothing if it is not. */
export function pageContent(p: Pick<Page, "content">): Record<string, unknown> {
  try {
    return JSON.parse(p.content) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** One line for a page: what happened, for people. */
export function pageSummary(p: Pick<Page, "kind" | "content">): string {
  const c = pageContent(p);
  switch (p.kind) {
    case "note":
      return `${c.corrects ? `(corrects page ${c.corrects}) ` : ""}${String(c.text ?? "")}`;
    case "phase change":
      return `phase: ${c.from ? `${c.from} → ` : ""}${c.phase}${c.note ? ` — ${c.note}` : ""}`;
    case "action submitted":
      return `action ${c.actionId} "${c.name}" on ${c.target}, signed by ${(c.signers as string[] | undefined)?.join(", ")}${c.heldForApproval ? " (held for approval)" : ""}`;
    case "action approved":
      return `action ${c.actionId} approved by ${c.approver}${c.released ? ", released" : ""}`;
    case "results summary": {
      const counts = (c.counts ?? {}) as Record<string, number>;
      return `action ${c.actionId} "${c.name}" complete: ${counts.targeted ?? 0} targeted, ${counts.success ?? 0} succeeded, ${counts.found ?? 0} found${(c.found as string[] | undefined)?.length ? ` (${(c.found as string[]).join(", ")})` : ""}`;
    }
    case "isolation":
    case "unisolation":
      return `${p.kind} of ${c.hostname || c.agentId} by action ${c.actionId}`;
    case "evidence collected":
      return `evidence ${c.id}: ${c.hostname}:${c.path} (${c.size} bytes, sha256 ${c.sha256}, ${c.status})`;
    case "custody transfer":
      return `evidence ${c.evidenceId} ${c.event === "export" ? "exported to" : "handed to"} ${c.to}${c.note ? ` — ${c.note}` : ""}`;
    case "alert":
      return `alert from ${c.hostname}: watch ${c.watch}, ${(c.changes as unknown[] | undefined)?.length ?? 0} changes`;
    case "notification":
      return `notified ${c.to}${c.message ? `: ${c.message}` : ""}`;
    default:
      return p.content.slice(0, 200);
  }
}
