import { OperationResult } from "../../proto/api.js";
import type { Column, Row } from "./rows.js";

// How a module's result becomes rows. Modules may register a formatter; any
// other module gets the generic one: each array of objects in its result (as
// proto JSON, camelCase) is a list of rows.

export interface ModuleFormatter {
  columns: Column[];
  rows(result: unknown): Row[];
}

const formatters = new Map<string, ModuleFormatter>();

export function registerFormatter(module: string, formatter: ModuleFormatter): void {
  formatters.set(module, formatter);
}

export function formatterFor(module: string): ModuleFormatter | undefined {
  return formatters.get(module);
}

function genericRows(json: unknown): Row[] {
  if (typeof json !== "object" || json === null) return [];
  const rows: Row[] = [];
  for (const value of Object.values(json)) {
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === "object" && item !== null) rows.push(item as Row);
    }
  }
  return rows;
}

/** The rows of one operation's result, without the agent (the caller adds it). */
export function rowsOfOperation(op: OperationResult): { module: string; rows: Row[] } {
  if (!op.module) return { module: "", rows: [] };
  const formatter = formatters.get(op.module.$case);
  if (formatter) return { module: op.module.$case, rows: formatter.rows(op.module.value) };
  const json = OperationResult.toJSON(op) as Record<string, unknown>;
  return { module: op.module.$case, rows: genericRows(json[op.module.$case]) };
}

export function columnsFor(modules: string[]): Column[] {
  const seen = new Set<string>();
  const columns: Column[] = [];
  for (const m of modules) {
    for (const c of formatters.get(m)?.columns ?? []) {
      if (!seen.has(c.key)) {
        seen.add(c.key);
        columns.push(c);
      }
    }
  }
  return columns;
}
