import { fileModule } from "./file/index.js";
import type { AgentModule, ModuleName } from "./registry.js";

/** Every module the agent ships, as a table (the MIG way): adding one is one line here. */
export const builtinModules: readonly AgentModule<ModuleName>[] = [fileModule];
