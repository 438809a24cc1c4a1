import { Codes, DragnetError } from "../../../common/mod.js";
import type { CollectParams } from "../../../proto/mod.js";
import { absolutePath } from "../check-kit.js";

/** The largest file collected unless the action says otherwise, and the most it may say. */
export const DEFAULT_MAX = 1024 ** 3;
const HARD_MAX = 64 * 1024 ** 3;

export function checkCollect(p: CollectParams): void {
  if (!absolutePath(p.path))
    throw new DragnetError(Codes.PARAMS, `collect: "${p.path.slice(0, 200)}" is not an absolute path`);
  if (p.maxBytes !== undefined && (p.maxBytes < 1 || p.maxBytes > HARD_MAX)) {
    throw new DragnetError(Codes.PARAMS, `collect: max bytes must be between 1 and ${HARD_MAX}`);
  }
}
