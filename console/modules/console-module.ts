import type { Command } from "commander";
import type { ModuleName, Operation, ResultOf } from "../../proto/api.js";
import type { Notes } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";

// A module as the console sees it: one file (console/modules/<name>.ts) with
// its command, flags, examples, result formatter and, where MIG has the same
// module, how MIG's parameters become its operations. The table of them
// (modules.gen.ts) is generated from the Operation oneof, so a module without
// its console file does not build.

/** What a console module adds its command to. */
export interface ConsoleCli {
  program: Command;
  /** `dragnet agents`, for commands that act on the agents themselves (upgrade). */
  agents: Command;
  /** Checks the operations as agents will, then signs, submits and follows them. */
  send: SendAction;
}

/** How a MIG module's parameters become Dragnet operations (one MIG operation may become several). */
export interface MigImport {
  /** MIG's name for its module. */
  module: string;
  /** Throws SearchFormatError (mig-search.ts) saying what cannot be carried over. */
  convert(parameters: unknown, notes: Notes): Operation[];
}

export interface ConsoleModule<N extends ModuleName> {
  name: N;
  /** The command lines it adds, as typed after `dragnet` ("isolate", "agents upgrade"). */
  commands: readonly string[];
  register(cli: ConsoleCli): void;
  formatter: ModuleFormatter<ResultOf<N>>;
  mig?: MigImport;
}

export type ConsoleModules = { readonly [N in ModuleName]: ConsoleModule<N> };

export function defineConsoleModule<N extends ModuleName>(module: ConsoleModule<N>): ConsoleModule<N> {
  return module;
}
