import type { ActionEvent, CoordinatorServer } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { type ApiCalls, clampLimit } from "./calls.js";

// Actions: submit, approve, read and watch them; the agents a target selects;
// the audit log.

type ActionCalls = Pick<
  CoordinatorServer,
  | "submitAction"
  | "approveAction"
  | "listAgents"
  | "previewTarget"
  | "getAction"
  | "listActions"
  | "listAudit"
  | "verifyAudit"
  | "watchAction"
>;

export function actionCalls(coordinator: Coordinator, calls: ApiCalls): ActionCalls {
  const { submissions, queries } = coordinator;
  return {
    submitAction: calls.unary(
      "SubmitAction",
      (req, who) => submissions.submit(req.action, who.name, who),
      (_q, r) => (r.pendingApproval ? "held for approval" : `${r.targeted} agents targeted`),
    ),
    approveAction: calls.unary(
      "ApproveAction",
      (req, who) => submissions.approve(req.actionId, req.signature, who.name, who.keyId),
      (_q, r) =>
        r.released ? `released to ${r.targeted} agents` : `weight ${r.weight} of ${r.requiredWeight}`,
    ),
    listAgents: calls.unary(
      "ListAgents",
      async (req) => ({ agents: await queries.listAgents(req.target) }),
      (q, r) => `target ${q.target || "(all)"}: ${r.agents.length} agents`,
    ),
    previewTarget: calls.unary(
      "PreviewTarget",
      async (req) => ({ agents: await queries.listAgents(req.target || "all") }),
      (q, r) => `target ${q.target || "all"}: ${r.agents.length} agents`,
    ),
    getAction: calls.unary("GetAction", (req) => queries.getAction(req.actionId, req.includeResults)),
    listActions: calls.unary("ListActions", async (req) => ({
      actions: await queries.listActions(clampLimit(req.limit, 20, 1000), req.pending),
    })),
    listAudit: calls.unary("ListAudit", async (req) => ({
      entries: await queries.listAudit(clampLimit(req.limit, 50, 10_000), req.actionId),
    })),
    verifyAudit: calls.unary(
      "VerifyAudit",
      async () => ({
        chains: (await coordinator.audit.verify()).map((v) => ({
          chain: v.chain,
          ok: v.ok,
          entries: v.entries,
          brokenAt: v.ok ? 0 : v.brokenAt,
          problem: v.ok ? "" : v.problem,
        })),
      }),
      (_q, r) =>
        r.chains
          .map((c) => `${c.chain}: ${c.ok ? `intact, ${c.entries} entries` : `broken at ${c.brokenAt}`}`)
          .join("; "),
    ),
    watchAction: calls.serverStream<{ actionId: string }, ActionEvent>(
      "WatchAction",
      async (req, _who, out) => ({
        stop: await queries.watch(req.actionId, out.push, out.end),
      }),
    ),
  };
}
