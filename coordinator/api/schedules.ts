import type { CoordinatorServer } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { type ApiCalls, clampLimit } from "./calls.js";

// Signed schedules (create, list, show, stop) and the export sinks' status.

export function scheduleCalls(
  coordinator: Coordinator,
  calls: ApiCalls,
): Pick<
  CoordinatorServer,
  "createSchedule" | "listSchedules" | "getSchedule" | "stopSchedule" | "exportStatus"
> {
  const { schedules } = coordinator;
  return {
    createSchedule: calls.unary(
      "CreateSchedule",
      (req, who) => schedules.create(req.schedule, who.name, who),
      (_q, r) => `${r.name}: every ${r.everyMs} ms, ${r.runs} runs`,
    ),
    listSchedules: calls.unary("ListSchedules", async (req) => ({
      schedules: await schedules.list(clampLimit(req.limit, 100, 1000)),
    })),
    getSchedule: calls.unary("GetSchedule", (req) => schedules.detail(req.id)),
    stopSchedule: calls.unary(
      "StopSchedule",
      (req, who) => schedules.stopSchedule(req.stop, who.name, who.keyId),
      (_q, r) => `${r.name} stopped after run ${r.lastRun}`,
    ),
    exportStatus: calls.unary("ExportStatus", async () => ({ sinks: await coordinator.exportStatus() })),
  };
}
