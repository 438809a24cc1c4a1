import type {
  StoredAction,
  StoredAgent,
  StoredCommand,
  StoredResult,
  StoredSchedule,
} from "../../coordinator/store/store.js";
import { ActionState, CommandResult, CommandStatus } from "../../proto/api.js";

// Records for store tests: complete, plausible, and each field overridable,
// so a test names only what it is about.

export function storedAction(id: string, over: Partial<StoredAction> = {}): StoredAction {
  return {
    id,
    name: "sweep",
    target: "all",
    signed: Buffer.from([1, 2, 3]),
    signerKeyIds: ["k1"],
    signerNames: ["alice"],
    modules: ["file"],
    incidentId: "",
    createdAtMs: 1_000,
    validFromMs: 1_000,
    expiresAtMs: 100_000,
    submittedAtMs: 1_000,
    timeoutMs: 60_000,
    state: ActionState.ACTION_STATE_RELEASED,
    weight: 1,
    requiredWeight: 0,
    ...over,
  };
}

export function storedCommand(
  id: string,
  actionId: string,
  agentId: string,
  over: Partial<StoredCommand> = {},
) {
  const command: StoredCommand = {
    id,
    actionId,
    agentId,
    status: CommandStatus.COMMAND_STATUS_PENDING,
    problemCode: "",
    problemMessage: "",
    found: false,
    createdAtMs: 1_000,
    sentAtMs: 0,
    ackedAtMs: 0,
    updatedAtMs: 1_000,
    ...over,
  };
  return command;
}

export function storedResult(
  commandId: string,
  actionId: string,
  agentId: string,
  over: Partial<StoredResult> = {},
) {
  const result: StoredResult = {
    commandId,
    actionId,
    agentId,
    found: false,
    payload: CommandResult.encode(
      CommandResult.fromPartial({
        commandId,
        actionId,
        agentId,
        status: CommandStatus.COMMAND_STATUS_SUCCESS,
        found: over.found ?? false,
      }),
    ).finish(),
    receivedAtMs: 2_000,
    ...over,
  };
  return result;
}

export function storedAgent(id: string, over: Partial<StoredAgent> = {}): StoredAgent {
  return {
    id,
    hostname: `host-${id}`,
    os: "linux",
    osRelease: "Debian 12",
    arch: "x64",
    version: "1.0.0",
    addresses: ["10.0.0.1"],
    tags: { role: "web" },
    isolated: false,
    startedAtMs: 1_000,
    lastSeenMs: 2_000,
    firstSeenMs: 500,
    intervalMs: 30_000,
    ...over,
  };
}

export function storedSchedule(id: string, over: Partial<StoredSchedule> = {}): StoredSchedule {
  return {
    id,
    name: "hunt",
    target: "all",
    signed: Buffer.from([4, 5, 6]),
    signerNames: ["alice"],
    modules: ["file"],
    incidentId: "",
    everyMs: 60_000,
    runs: 10,
    firstRunAtMs: 10_000,
    endsAtMs: 610_000,
    submittedAtMs: 9_000,
    lastRun: 0,
    stoppedBy: "",
    stopReason: "",
    ...over,
  };
}
