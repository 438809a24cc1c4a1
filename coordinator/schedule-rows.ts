import type { OperationResult } from "../proto/api.js";

// A module's answer as a set of rows, for comparing one run of a schedule with
// the host's previous run: each element of the answer's lists (files found,
// processes, sockets, packages, keys, accounts, findings …) is one row, as
// compact JSON with its keys sorted. Fields that change on every run without
// anything happening (a process's memory and state, a socket's queue state,
// round-trip times, clock offsets, durations) are left out, or every run would
// alert. A module whose answer holds no list (ping, timedrift) is one row of
// its lasting fields and whether it found something.

/** Lists that say how the run went, not what the host holds. */
const NOT_ROWS = new Set(["errors", "warnings", "managers", "files", "baselines", "watches"]);
/** Fields that change without a change on the host, by module; "*" for all. */
const VOLATILE: Record<string, readonly string[]> = {
  "*": ["durationMs", "atMs", "scannedAtMs"],
  process: ["rssBytes", "state"],
  netstat: ["state", "inode"],
  ping: ["rttMinMs", "rttAvgMs", "rttMaxMs", "sent", "answered"],
  timedrift: ["offsetMs", "rttMs", "samples", "agentTimeMs"],
  yara: ["filesScanned", "bytesScanned", "processesScanned"],
  memory: ["bytesRead", "processesSearched", "regionsSkipped"],
};
/** A row longer than this is cut (its start still tells rows apart). */
const MAX_ROW_CHARS = 2000;
/** Rows kept per host and run: more are left out (the answer then counts as partial). */
export const MAX_ROWS = 20_000;

function stable(value: unknown, skip: ReadonlySet<string>): unknown {
  if (Array.isArray(value)) return value.map((v) => stable(v, skip));
  if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (skip.has(k) || v === undefined || v === "" || v === 0 || v === false) continue;
      if (Array.isArray(v) && v.length === 0) continue;
      out[k] = stable(v, skip);
    }
    return out;
  }
  return value;
}

function rowText(value: unknown, skip: ReadonlySet<string>): string {
  const text = JSON.stringify(stable(value, skip));
  return text.length > MAX_ROW_CHARS ? `${text.slice(0, MAX_ROW_CHARS)}…` : text;
}

/** The rows of one operation's answer, each prefixed by where it came from (`file.matches`). */
export function rowsOf(op: OperationResult): string[] {
  if (!op.module) return [];
  const name = op.module.$case;
  const value = op.module.value as unknown as Record<string, unknown>;
  const skip = new Set([...(VOLATILE["*"] ?? []), ...(VOLATILE[name] ?? [])]);
  const rows: string[] = [];
  let lists = 0;
  for (const [field, v] of Object.entries(value)) {
    if (!Array.isArray(v) || NOT_ROWS.has(field)) continue;
    lists++;
    for (const item of v) rows.push(`${name}.${field} ${rowText(item, skip)}`);
  }
  if (lists === 0) {
    const scalars = Object.fromEntries(
      Object.entries(value).filter(([, v]) => v === null || typeof v !== "object"),
    );
    rows.push(`${name} ${rowText({ ...scalars, found: op.found }, skip)}`);
  }
  return rows;
}

/**
 * Whether an answer may hold only part of what is there: a module's own limit
 * cut it (file matches, memory or YARA budgets) or it met errors (a file it
 * could not open). Rows missing from such an answer did not vanish.
 */
export function isPartial(op: OperationResult): boolean {
  const value = op.module?.value as unknown as Record<string, unknown> | undefined;
  if (!value) return false;
  const stats = value.stats as { truncated?: boolean } | undefined;
  const errors = value.errors;
  return (
    value.truncated === true || stats?.truncated === true || (Array.isArray(errors) && errors.length > 0)
  );
}

/** Every operation's rows, each once, sorted; at most MAX_ROWS (more: the answer counts as partial). */
export function answerRows(operations: readonly OperationResult[]): { rows: string[]; partial: boolean } {
  const all = [...new Set(operations.flatMap(rowsOf))].sort();
  return { rows: all.slice(0, MAX_ROWS), partial: all.length > MAX_ROWS || operations.some(isPartial) };
}

/** What appeared and what vanished between two sorted row lists. */
export function diffRows(before: readonly string[], after: readonly string[]) {
  const old = new Set(before);
  const now = new Set(after);
  return {
    added: after.filter((r) => !old.has(r)),
    vanished: before.filter((r) => !now.has(r)),
  };
}
