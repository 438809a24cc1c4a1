import { Codes, DragnetError } from "../../../common/mod.js";
import type { VerifyParams } from "../../../proto/mod.js";
import { absolutePath, optionalRegex } from "../check-kit.js";
import { MANAGERS } from "../pkg/check.js";

/** Directories the unowned search asks for at most. */
export const MAX_UNOWNED_DIRS = 32;

/** Pseudo file systems: nothing there is a file a package could own, and reading can hang or cost. */
export const PSEUDO_DIRS = ["/proc", "/sys", "/dev"] as const;

export const underPseudo = (path: string): boolean =>
  PSEUDO_DIRS.some((d) => path === d || path.startsWith(`${d}/`));

export function checkVerify(p: VerifyParams): void {
  optionalRegex("verify: package regex", p.package);
  if (p.manager && !(MANAGERS as readonly string[]).includes(p.manager))
    throw new DragnetError(
      Codes.PARAMS,
      `verify: manager is ${MANAGERS.join(" or ")}, not "${p.manager.slice(0, 20)}"`,
    );
  if (p.unowned.length > MAX_UNOWNED_DIRS)
    throw new DragnetError(
      Codes.PARAMS,
      `verify: at most ${MAX_UNOWNED_DIRS} directories for the unowned search, not ${p.unowned.length}`,
    );
  for (const dir of p.unowned) {
    const path = absolutePath(dir);
    if (!path)
      throw new DragnetError(
        Codes.PARAMS,
        `verify: unowned directory "${dir.slice(0, 200)}" is not an absolute path`,
      );
    if (underPseudo(path))
      throw new DragnetError(
        Codes.PARAMS,
        `verify: unowned directory "${path.slice(0, 200)}" is in ${PSEUDO_DIRS.join(", ")}, which hold no files a package could own`,
      );
  }
  if (p.unownedOnly && p.unowned.length === 0)
    throw new DragnetError(Codes.PARAMS, "verify: unowned-only needs directories to search (unowned)");
  if (p.unownedOnly && (p.package || p.includeConfig))
    throw new DragnetError(
      Codes.PARAMS,
      "verify: unowned-only checks no package's files, so a package regex or include-config has no effect",
    );
}
