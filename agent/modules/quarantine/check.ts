import { Codes, DragnetError } from "../../../common/mod.js";
import type { QuarantineParams } from "../../../proto/mod.js";
import { absolutePath } from "../check-kit.js";

/** A vault id (a Dragnet id). */
const ID = /^[0-9a-z]{26}$/;

export function checkQuarantine(p: QuarantineParams): void {
  const mode = p.mode || "quarantine";
  if (!["quarantine", "restore", "list"].includes(mode)) {
    throw new DragnetError(
      Codes.PARAMS,
      `quarantine: mode is quarantine, restore or list, not "${p.mode.slice(0, 20)}"`,
    );
  }
  if (mode === "quarantine" && !absolutePath(p.path)) {
    throw new DragnetError(Codes.PARAMS, `quarantine: "${p.path.slice(0, 200)}" is not an absolute path`);
  }
  if (mode === "restore" && !ID.test(p.id))
    throw new DragnetError(Codes.PARAMS, "quarantine: restore needs a vault id (26 characters)");
}
