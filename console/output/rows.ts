import Table from "cli-table3";
import { stringify } from "csv-stringify/sync";

// Rows out: a table on a terminal, NDJSON with --json, CSV with --csv. Every
// row of a sweep carries the agent (id, hostname) and the module's own fields
// in camelCase.

export type Format = "table" | "json" | "csv";

export interface Column {
  key: string;
  header: string;
  /** How to show the value in a table or CSV cell (JSON keeps the raw value). */
  show?: (value: unknown, row: Row) => string;
}

export type Row = Record<string, unknown> & { agent?: { id: string; hostname: string } };

export function formatOf(opts: { json?: boolean; csv?: boolean }): Format {
  return opts.json ? "json" : opts.csv ? "csv" : "table";
}

const AGENT_COLUMNS: Column[] = [
  { key: "agent.hostname", header: "hostname", show: (_v, r) => r.agent?.hostname ?? "" },
  { key: "agent.id", header: "agent", show: (_v, r) => r.agent?.id ?? "" },
];

function cell(column: Column, row: Row): string {
  const value = row[column.key];
  if (column.show) return column.show(value, row);
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export class RowWriter {
  private readonly buffered: Row[] = [];
  private headerWritten = false;
  count = 0;

  constructor(
    private readonly format: Format,
    private readonly columns: Column[],
    private readonly options: { withAgent?: boolean; out?: NodeJS.WritableStream } = {},
  ) {}

  private get allColumns(): Column[] {
    return this.options.withAgent === false ? this.columns : [...AGENT_COLUMNS, ...this.columns];
  }

  private write(text: string): void {
    (this.options.out ?? process.stdout).write(text);
  }

  add(row: Row): void {
    this.count++;
    if (this.format === "json") {
      this.write(`${JSON.stringify(row)}\n`);
    } else if (this.format === "csv") {
      const cols = this.allColumns;
      if (!this.headerWritten) {
        this.write(stringify([cols.map((c) => c.header)]));
        this.headerWritten = true;
      }
      this.write(stringify([cols.map((c) => cell(c, row))]));
    } else {
      this.buffered.push(row);
    }
  }

  /** Prints the table (tables need every row to size their columns). */
  end(): void {
    if (this.format !== "table" || this.buffered.length === 0) return;
    // A column no row fills is left out (one formatter serves several modes of a module).
    const cols = this.allColumns.filter((c) => this.buffered.some((r) => cell(c, r) !== ""));
    const table = new Table({
      head: cols.map((c) => c.header),
      style: { head: [], border: [], compact: true },
      chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" },
    });
    // Results arrive in any order; a table reads best grouped by host (stable, so each host's rows keep theirs).
    const rows =
      this.options.withAgent === false
        ? this.buffered
        : [...this.buffered].sort((a, b) => (a.agent?.hostname ?? "").localeCompare(b.agent?.hostname ?? ""));
    for (const row of rows) table.push(cols.map((c) => printable(cell(c, row))));
    this.write(`${table.toString()}\n`);
  }
}

export function isoTime(ms: unknown): string {
  return typeof ms === "number" && ms > 0 ? new Date(ms).toISOString() : "";
}

/**
 * Text from agents, files or other investigators made safe for a terminal:
 * control characters (escape sequences could rewrite what is on screen) and
 * bidirectional overrides are shown as \u escapes. Newlines and tabs (multi-line
 * text: diffs) are kept only when asked.
 */
const UNSAFE = "\\u0000-\\u001f\\u007f-\\u009f\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";
const UNSAFE_RE = new RegExp(`[${UNSAFE}]`, "g");
const UNSAFE_BUT_LAYOUT_RE = new RegExp(`(?![\\n\\t])[${UNSAFE}]`, "g");

export function printable(text: string, keepLayout = false): string {
  return text.replace(
    keepLayout ? UNSAFE_BUT_LAYOUT_RE : UNSAFE_RE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
