import { Codes, DragnetError } from "../../../common/mod.js";
import type { FileParams } from "../../../proto/mod.js";
import { type CompiledSearch, compileSearch } from "./criteria.js";

const MAX_SEARCHES = 64;

/** The file operation's searches, each validated and compiled (criteria.ts says what each means). */
export function compileFileParams(params: FileParams): CompiledSearch[] {
  if (params.searches.length === 0) throw new DragnetError(Codes.PARAMS, "the file operation has no search");
  if (params.searches.length > MAX_SEARCHES) {
    throw new DragnetError(Codes.PARAMS, `the file operation has more than ${MAX_SEARCHES} searches`);
  }
  return params.searches.map((s, i) => compileSearch(s, i));
}

export function checkFile(params: FileParams): void {
  compileFileParams(params);
}
