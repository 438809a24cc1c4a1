import type { CoordinatorServer } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { type ApiCalls, clampLimit } from "./calls.js";

// Incidents: open them, move them through their phases, write in their
// notebook, check its chain, report on it, notify people.

type IncidentCalls = Pick<
  CoordinatorServer,
  | "openIncident"
  | "listIncidents"
  | "getIncident"
  | "changePhase"
  | "addNote"
  | "verifyIncident"
  | "incidentReport"
  | "notify"
>;

export function incidentCalls(coordinator: Coordinator, calls: ApiCalls): IncidentCalls {
  const { incidents } = coordinator;
  const { notebook } = incidents;
  return {
    openIncident: calls.unary(
      "OpenIncident",
      async (req, who) => incidents.info(await notebook.open(req.title, req.severity || "medium", who.name)),
      (_q, r) => `incident ${r.id} opened: ${r.title}`,
    ),
    listIncidents: calls.unary("ListIncidents", async (req) => ({
      incidents: (await notebook.list(clampLimit(req.limit, 50, 1000))).map((i) => incidents.info(i)),
    })),
    getIncident: calls.unary("GetIncident", async (req) => {
      const incident = await notebook.get(req.id);
      return { incident: incidents.info(incident), pages: await notebook.pages(incident.id) };
    }),
    changePhase: calls.unary(
      "ChangePhase",
      (req, who) => notebook.phase(req.id, req.phase, req.note, who.name),
      (q) => `incident ${q.id}: phase ${q.phase}`,
    ),
    addNote: calls.unary(
      "AddNote",
      (req, who) =>
        notebook.note(
          req.id,
          { text: req.text, atMs: req.atMs, signature: req.signature, corrects: req.corrects },
          { name: who.name, keyId: who.keyId },
        ),
      (q, r) => `incident ${q.id}: note, page ${r.seq}`,
    ),
    verifyIncident: calls.unary(
      "VerifyIncident",
      async (req) => {
        const r = await notebook.verify(req.id);
        return r.ok
          ? { ok: true, pages: r.pages, brokenPage: 0, problem: "" }
          : { ok: false, pages: r.pages, brokenPage: r.seq, problem: r.problem };
      },
      (q, r) => `incident ${q.id}: ${r.ok ? "intact" : `broken at page ${r.brokenPage}`}`,
    ),
    incidentReport: calls.unary("IncidentReport", async (req) => ({
      content: await incidents.report(req.id, req.format),
    })),
    notify: calls.unary(
      "Notify",
      (req, who) => incidents.notify(req.incidentId, req.to, req.message, who.name),
      (q, r) => `incident ${q.incidentId}: notified ${q.to}${r.webhook ? ` (webhook ${r.webhook})` : ""}`,
    ),
  };
}
