import { CommandStatus, type StatusCounts } from "../proto/api.js";

const S = CommandStatus;

export const FINAL_STATUSES: ReadonlySet<CommandStatus> = new Set([
  S.COMMAND_STATUS_SUCCESS,
  S.COMMAND_STATUS_FAILED,
  S.COMMAND_STATUS_REJECTED,
  S.COMMAND_STATUS_TIMEOUT,
  S.COMMAND_STATUS_EXPIRED,
  S.COMMAND_STATUS_CANCELLED,
]);

export function isFinal(status: CommandStatus): boolean {
  return FINAL_STATUSES.has(status);
}

const ALLOWED: ReadonlyMap<CommandStatus, ReadonlySet<CommandStatus>> = new Map([
  [
    S.COMMAND_STATUS_PENDING,
    new Set([
      S.COMMAND_STATUS_SENT,
      S.COMMAND_STATUS_RUNNING,
      S.COMMAND_STATUS_REJECTED,
      S.COMMAND_STATUS_SUCCESS,
      S.COMMAND_STATUS_FAILED,
      S.COMMAND_STATUS_TIMEOUT,
      S.COMMAND_STATUS_EXPIRED,
      S.COMMAND_STATUS_CANCELLED,
    ]),
  ],
  [
    S.COMMAND_STATUS_SENT,
    new Set([
      S.COMMAND_STATUS_SENT,
      S.COMMAND_STATUS_RUNNING,
      S.COMMAND_STATUS_REJECTED,
      S.COMMAND_STATUS_SUCCESS,
      S.COMMAND_STATUS_FAILED,
      S.COMMAND_STATUS_TIMEOUT,
      S.COMMAND_STATUS_EXPIRED,
      S.COMMAND_STATUS_CANCELLED,
    ]),
  ],
  [
    S.COMMAND_STATUS_RUNNING,
    new Set([
      S.COMMAND_STATUS_SUCCESS,
      S.COMMAND_STATUS_FAILED,
      S.COMMAND_STATUS_TIMEOUT,
      S.COMMAND_STATUS_CANCELLED,
    ]),
  ],
  // A result that arrives after the coordinator gave up still counts: the agent did answer.
  [S.COMMAND_STATUS_TIMEOUT, new Set([S.COMMAND_STATUS_SUCCESS, S.COMMAND_STATUS_FAILED])],
  [S.COMMAND_STATUS_EXPIRED, new Set([S.COMMAND_STATUS_SUCCESS, S.COMMAND_STATUS_FAILED])],
]);

export function canTransition(from: CommandStatus, to: CommandStatus): boolean {
  return ALLOWED.get(from)?.has(to) ?? false;
}

export function statusName(status: CommandStatus): string {
  return (CommandStatus[status] ?? "UNKNOWN").replace("COMMAND_STATUS_", "").toLowerCase();
}

export function emptyCounts(): StatusCounts {
  return {
    targeted: 0,
    pending: 0,
    sent: 0,
    running: 0,
    success: 0,
    failed: 0,
    rejected: 0,
    timeout: 0,
    expired: 0,
    cancelled: 0,
    found: 0,
    waitingOffline: 0,
  };
}

type CountKey = Exclude<keyof StatusCounts, "targeted" | "found" | "waitingOffline">;

const KEY: Partial<Record<CommandStatus, CountKey>> = {
  [S.COMMAND_STATUS_PENDING]: "pending",
  [S.COMMAND_STATUS_SENT]: "sent",
  [S.COMMAND_STATUS_RUNNING]: "running",
  [S.COMMAND_STATUS_SUCCESS]: "success",
  [S.COMMAND_STATUS_FAILED]: "failed",
  [S.COMMAND_STATUS_REJECTED]: "rejected",
  [S.COMMAND_STATUS_TIMEOUT]: "timeout",
  [S.COMMAND_STATUS_EXPIRED]: "expired",
  [S.COMMAND_STATUS_CANCELLED]: "cancelled",
};

/** Adds `delta` commands of `status` to the counts. */
export function tally(counts: StatusCounts, status: CommandStatus, delta: number): void {
  const key = KEY[status];
  if (key) counts[key] += delta;
}

export function countsOf(commands: Iterable<{ status: CommandStatus; found: boolean }>): StatusCounts {
  const counts = emptyCounts();
  for (const c of commands) {
    counts.targeted++;
    tally(counts, c.status, 1);
    if (c.found) counts.found++;
  }
  return counts;
}
