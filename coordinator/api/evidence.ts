import type { CoordinatorServer, EvidencePart } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { type ApiCalls, clampLimit } from "./calls.js";

// Evidence: what agents collected and investigators registered, its chain of
// custody, a check of its hash, and a copy of one item streamed out.

type EvidenceCalls = Pick<
  CoordinatorServer,
  "recordCustody" | "registerEvidence" | "verifyEvidence" | "listEvidence" | "getEvidence"
>;

export function evidenceCalls(coordinator: Coordinator, calls: ApiCalls): EvidenceCalls {
  const { evidence, incidents } = coordinator;
  return {
    recordCustody: calls.unary(
      "RecordCustody",
      (req, who) =>
        incidents.recordCustody(req.evidenceId, req.event, req.to, req.note, req.sha256, who.name),
      (q) => `evidence ${q.evidenceId}: ${q.event} to ${q.to}`,
    ),
    registerEvidence: calls.unary(
      "RegisterEvidence",
      async (req, who) =>
        evidence.register(
          { ...req, incidentId: (await incidents.notebook.get(req.incidentId)).id },
          who.name,
        ),
      (_q, r) => `evidence ${r.id} registered: ${r.path}`,
    ),
    verifyEvidence: calls.unary("VerifyEvidence", (req) => evidence.verifyStored(req.id)),
    listEvidence: calls.unary(
      "ListEvidence",
      async (req) => ({ items: await evidence.list(req.incidentId, clampLimit(req.limit, 100, 10_000)) }),
      (q, r) => `incident ${q.incidentId || "(any)"}: ${r.items.length} items`,
    ),
    getEvidence: calls.serverStream<{ id: string }, EvidencePart>("GetEvidence", async (req, _who, out) => {
      const { item } = await evidence.get(req.id);
      const stream = await evidence.read(item);
      out.write({ part: { $case: "item", value: item } });
      out.cancelled(() => stream.destroy());
      stream.on("data", (data) => {
        // Back-pressure: pause reading while gRPC's buffer drains.
        if (!out.write({ part: { $case: "data", value: data as Buffer } })) {
          stream.pause();
          out.drained(() => stream.resume());
        }
      });
      stream.on("end", () => out.end());
      stream.on("error", (err) => out.fail(err));
      return {
        stop: () => stream.destroy(),
        audit: {
          actionId: item.actionId,
          agentId: item.agentId,
          message: `evidence ${item.id} (${item.path}, ${item.size} bytes, sha256 ${item.sha256})`,
        },
      };
    }),
  };
}
