import type { Operation, OperationResult } from "./gen/dragnet/v1/agent.js";
import { MODULE_KINDS } from "./gen/modules.js";

// The modules, as the Operation oneof names them: each case is one module,
// its parameters the case's message and its answer OperationResult's case of
// the same name. Everything that lists modules (the agent's, the console's,
// the ACL's response list) is typed by, or generated from, these cases.

type OperationCase = NonNullable<Operation["module"]>;
type ResultCase = NonNullable<OperationResult["module"]>;

export type ModuleName = OperationCase["$case"];
/** Each module's parameters and answer, by name: indexed by a type parameter, they stay tied to it. */
type ParamsByModule = { [C in OperationCase as C["$case"]]: C["value"] };
type ResultByModule = { [C in ResultCase as C["$case"]]: C["value"] };
export type ParamsOf<N extends ModuleName> = ParamsByModule[N];
export type ResultOf<N extends ModuleName> = ResultByModule[N];
/**
 * Investigation modules read a host; response modules change it; sensitive
 * modules read what may hold secrets (process memory). Response and
 * sensitive modules need two people by default.
 */
export type ModuleKindName = "investigation" | "response" | "sensitive";

export { MODULE_KINDS };

/** Every module, in the oneof's order. */
export const MODULE_NAMES = Object.keys(MODULE_KINDS) as ModuleName[];

export function isModuleName(name: string): name is ModuleName {
  return Object.hasOwn(MODULE_KINDS, name);
}

/** Whether a module changes hosts; a name no module has is not a response module. */
export function isResponseModule(name: string): boolean {
  return isModuleName(name) && MODULE_KINDS[name] === "response";
}

/**
 * ACL names of a module's sensitive use (common/acl.ts aclNameOf): YARA over
 * process memory reads what memory holds, as the memory module does.
 */
export const SENSITIVE_USES = ["yara_memory"] as const;

/** Whether a module needs two people unless an ACL says otherwise (response and sensitive modules). */
export function needsTwoByDefault(name: string): boolean {
  if ((SENSITIVE_USES as readonly string[]).includes(name)) return true;
  return isModuleName(name) && MODULE_KINDS[name] !== "investigation";
}

/** Wraps a module's result back into the OperationResult oneof. */
export function resultCase<N extends ModuleName>(name: N, result: ResultOf<N>): ResultCase {
  return { $case: name, value: result } as ResultCase;
}
