import type { Logger } from "../../common/mod.js";
import { Codes, DragnetError } from "../../common/mod.js";
import type { Operation, OperationResult } from "../../proto/mod.js";

// A module is one place: its name (the Operation oneof case), a params check
// and a run function. The registry is built from the list in ./index.ts; no
// switch elsewhere names modules.

type OperationCase = NonNullable<Operation["module"]>;
type ResultCase = NonNullable<OperationResult["module"]>;

export type ModuleName = OperationCase["$case"];
export type ParamsOf<N extends ModuleName> = Extract<OperationCase, { $case: N }>["value"];
export type ResultOf<N extends ModuleName> = Extract<ResultCase, { $case: N }>["value"];

export interface ModuleContext {
  /** Aborted when the action's timeout passes or the agent stops. */
  signal: AbortSignal;
  log: Logger;
  /** The agent's state directory, for modules that keep state (baselines, vaults). */
  stateDir: string;
}

export interface ModuleOutcome<N extends ModuleName> {
  found: boolean;
  result: ResultOf<N>;
}

export interface AgentModule<N extends ModuleName = ModuleName> {
  name: N;
  /** Response modules change the host; the ACL treats them more strictly. */
  kind: "investigation" | "response";
  summary: string;
  /** Throws DragnetError(PARAMS) saying what is wrong. Runs before anything executes. */
  check(params: ParamsOf<N>): void;
  run(params: ParamsOf<N>, ctx: ModuleContext): Promise<ModuleOutcome<N>>;
}

/** Any one module, whichever its name: what lists of modules hold. */
export type SomeModule = { [N in ModuleName]: AgentModule<N> }[ModuleName];

export function defineModule<N extends ModuleName>(module: AgentModule<N>): AgentModule<N> {
  return module;
}

/** Wraps a module's result back into the OperationResult oneof. */
export function resultCase<N extends ModuleName>(name: N, result: ResultOf<N>): ResultCase {
  return { $case: name, value: result } as ResultCase;
}

export class ModuleRegistry {
  private readonly modules = new Map<string, AgentModule>();

  constructor(modules: readonly SomeModule[] = []) {
    for (const m of modules) this.register(m);
  }

  register(module: SomeModule): void {
    if (this.modules.has(module.name)) throw new Error(`module ${module.name} is registered twice`);
    this.modules.set(module.name, module as unknown as AgentModule);
  }

  get(name: string): AgentModule | undefined {
    return this.modules.get(name);
  }

  names(): string[] {
    return [...this.modules.keys()].sort();
  }

  /** The module for an operation, or a refusal naming what is unknown. */
  resolve(op: Operation, index: number): { module: AgentModule; params: unknown } {
    if (!op.module) {
      throw new DragnetError(
        Codes.UNKNOWN_MODULE,
        `operation ${index + 1} names no module this agent knows (it has: ${this.names().join(", ")})`,
      );
    }
    const module = this.modules.get(op.module.$case);
    if (!module) {
      throw new DragnetError(
        Codes.UNKNOWN_MODULE,
        `operation ${index + 1}: this agent has no module "${op.module.$case}"`,
      );
    }
    return { module, params: op.module.value };
  }
}
