import type { CoordinatorServer, StoredAlert } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { type ApiCalls, clampLimit } from "./calls.js";

// Alerts from the agents' persistent watches: listed, or followed live.

export function alertCalls(
  coordinator: Coordinator,
  calls: ApiCalls,
): Pick<CoordinatorServer, "listAlerts" | "watchAlerts"> {
  const { alerts, queries } = coordinator;
  return {
    listAlerts: calls.unary(
      "ListAlerts",
      async (req) => ({
        alerts: await alerts.list(
          await queries.alertFilter(req.target),
          req.sinceMs,
          clampLimit(req.limit, 100, 10_000),
        ),
      }),
      (q, r) => `target ${q.target || "(all)"}: ${r.alerts.length} alerts`,
    ),
    watchAlerts: calls.serverStream<{ target: string; afterSeq: number; fromCursor: boolean }, StoredAlert>(
      "WatchAlerts",
      async (req, _who, out) => ({
        stop: await alerts.follow(
          await queries.alertFilter(req.target),
          req.afterSeq,
          out.push,
          req.fromCursor,
        ),
        audit: { message: `target ${req.target || "(all)"}` },
      }),
    ),
  };
}
