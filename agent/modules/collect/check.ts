import { Codes, DragnetError } from "../../../common/mod.js";
import type { CollectParams } from "../../../proto/mod.js";
import { absolutePath, optionalRegex } from "../check-kit.js";

/** The largest file collected unless the action says otherwise, and the most it may say. */
export const DEFAULT_MAX = 1024 ** 3;
const HARD_MAX = 64 * 1024 ** 3;
/** The most files one directory collect may take. */
const MAX_FILES = 10_000;

export function checkCollect(p: CollectParams): void {
  if (!absolutePath(p.path))
    throw new DragnetError(Codes.PARAMS, `collect: "${p.path.slice(0, 200)}" is not an absolute path`);
  if (p.maxBytes !== undefined && (p.maxBytes < 1 || p.maxBytes > HARD_MAX)) {
    throw new DragnetError(Codes.PARAMS, `collect: max bytes must be between 1 and ${HARD_MAX}`);
  }
  if (p.maxFiles !== undefined && (p.maxFiles < 1 || p.maxFiles > MAX_FILES))
    throw new DragnetError(Codes.PARAMS, `collect: max files must be between 1 and ${MAX_FILES}`);
  if (p.name && p.maxFiles === undefined)
    throw new DragnetError(Codes.PARAMS, "collect: a name filter is for a directory (give max files)");
  optionalRegex("collect name regex", p.name);
}
