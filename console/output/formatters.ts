import type { ModuleName, OperationResult, ResultOf } from "../../proto/api.js";
import type { Column, Row } from "./rows.js";

// How a module's result becomes rows: each module's formatter (in its
// console module, console/modules/<name>.ts), typed by its result.

export interface ModuleFormatter<R> {
  columns: Column[];
  rows(result: R): Row[];
}

/** A formatter for every module: what the table of console modules holds. */
export type Formatters = { readonly [N in ModuleName]: { readonly formatter: ModuleFormatter<ResultOf<N>> } };

/** The rows and columns of any module's results, from the table of formatters. */
export class ResultRows {
  constructor(private readonly modules: Formatters) {}

  /** The rows of one operation's result, without the agent (the caller adds it). */
  of(op: OperationResult): Row[] {
    return op.module ? this.rowsOf(op.module.$case, op.module.value) : [];
  }

  private rowsOf<N extends ModuleName>(name: N, result: ResultOf<N>): Row[] {
    return this.modules[name].formatter.rows(result);
  }

  /** The columns of these modules' rows, each once, in order; modules this console does not know add none. */
  columnsFor(modules: readonly string[]): Column[] {
    const seen = new Set<string>();
    const columns: Column[] = [];
    for (const m of modules) {
      if (!Object.hasOwn(this.modules, m)) continue;
      for (const c of this.modules[m as ModuleName].formatter.columns) {
        if (!seen.has(c.key)) {
          seen.add(c.key);
          columns.push(c);
        }
      }
    }
    return columns;
  }
}
