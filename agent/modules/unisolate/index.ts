import { Codes, DragnetError } from "../../../common/mod.js";
import type { Isolation } from "../isolate/index.js";
import { defineModule } from "../registry.js";
import { checkUnisolate } from "./check.js";

// `unisolate`: lifts the isolation the isolate module's service keeps (its own
// rules only; every other firewall rule stays), or only reports it.

export const unisolateModule = defineModule<"unisolate", Isolation>({
  name: "unisolate",
  check: checkUnisolate,
  serviceFrom: "isolate",
  async run(p, ctx) {
    const service = ctx.service;
    if (!service)
      throw new DragnetError(Codes.MODULE_FAILED, "unisolate: this agent runs no isolation service");
    const result = service.unisolate(p.statusOnly);
    return { found: p.statusOnly ? result.isolated : result.removed, result };
  },
});
