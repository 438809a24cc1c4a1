import type { FileResult } from "../../../proto/mod.js";
import { defineModule } from "../registry.js";
import { checkFile, compileFileParams } from "./check.js";
import { runSearch, type SearchTally } from "./search.js";

/**
 * `file`: find files by name, content, size, mode, mtime and hashes — every
 * search MIG's file module can express (see criteria.ts for the semantics).
 */
export const fileModule = defineModule({
  name: "file",
  check: checkFile,
  async run(params, ctx) {
    const started = Date.now();
    const searches = compileFileParams(params);
    const maxErrors = Math.max(...searches.map((s) => s.maxErrors));
    const result: FileResult = {
      matches: [],
      errors: [],
      warnings: [],
      stats: {
        filesExamined: 0,
        dirsWalked: 0,
        openFailures: 0,
        matches: 0,
        errorsTotal: 0,
        durationMs: 0,
        truncated: false,
        filesRead: 0,
        bytesRead: 0,
        warningsTotal: 0,
      },
    };
    const tally: SearchTally = result.stats!;
    for (const [i, search] of searches.entries()) {
      const matches = await runSearch(search, params.searches[i]!, i, ctx.signal, tally, {
        error: (message) => {
          if (result.errors.length < maxErrors) result.errors.push(message);
        },
        warning: (message) => {
          if (result.warnings.length < maxErrors) result.warnings.push(message);
        },
      });
      // One by one: a spread of tens of thousands of matches overflows the call stack.
      for (const m of matches) result.matches.push(m);
    }
    result.stats!.matches = result.matches.length;
    result.stats!.durationMs = Date.now() - started;
    return { found: result.matches.length > 0, result };
  },
});
