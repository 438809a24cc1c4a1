import { collectModule } from "./collect/index.js";
import { driftModule } from "./drift/index.js";
import { fileModule } from "./file/index.js";
import { isolateModule, unisolateModule } from "./isolate/index.js";
import { killModule } from "./kill/index.js";
import { memoryModule } from "./memory/index.js";
import { netstatModule } from "./netstat/index.js";
import { processModule } from "./process/index.js";
import { quarantineModule } from "./quarantine/index.js";
import type { SomeModule } from "./registry.js";
import { upgradeModule } from "./upgrade/index.js";

/** Every module the agent ships, as a table (the MIG way): adding one is one line here. */
export const builtinModules: readonly SomeModule[] = [
  fileModule,
  processModule,
  netstatModule,
  memoryModule,
  driftModule,
  isolateModule,
  unisolateModule,
  killModule,
  quarantineModule,
  collectModule,
  upgradeModule,
];
