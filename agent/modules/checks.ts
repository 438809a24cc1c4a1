import { Codes, DragnetError } from "../../common/mod.js";
import type { ModuleName, Operation, ParamsOf } from "../../proto/mod.js";
import { moduleChecks } from "./checks.gen.js";

// Every module's parameter check, for whoever must refuse what an agent would
// refuse before anything is signed: the console (and the web console it
// serves). The one part of the agent other components may import; it holds
// no agent code but the pure checks (./<name>/check.ts).

export { moduleChecks };

/** Throws DragnetError(PARAMS) with the module's own message for the first operation an agent would refuse. */
export function checkOperations(operations: readonly Operation[]): void {
  for (const [i, op] of operations.entries()) {
    if (!op.module) {
      throw new DragnetError(Codes.UNKNOWN_MODULE, `operation ${i + 1} names no module`);
    }
    checkParams(op.module.$case, op.module.value);
  }
}

/** Throws DragnetError(PARAMS) when `params` are not what module `name` accepts. */
export function checkParams<N extends ModuleName>(name: N, params: ParamsOf<N>): void {
  moduleChecks[name](params);
}

/** The file module's hashes (flags, MIG names, match fields), for the console's flags, rows and MIG import. */
export { HASH_FAMILIES, HASH_FIELD, HASH_NAMES, HASHES, type HashName } from "./file/criteria.js";
/** The places persistence looks (its --kind values), for the console's help. */
export { PERSISTENCE_KINDS } from "./persistence/check.js";
export {
  describeCompileError as describeYaraError,
  MAX_RULES_BYTES as MAX_YARA_RULES_BYTES,
  YARA_ADDON,
} from "./yara/check.js";
