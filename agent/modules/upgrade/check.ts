import { Codes, DragnetError } from "../../../common/mod.js";
import { isVersion } from "../../../common/release.js";
import type { UpgradeParams } from "../../../proto/mod.js";

export function checkUpgrade(p: UpgradeParams): void {
  if (!isVersion(p.version))
    throw new DragnetError(Codes.PARAMS, `upgrade: "${p.version.slice(0, 64)}" is not a version`);
  if (p.healthTimeoutMs && (p.healthTimeoutMs < 5_000 || p.healthTimeoutMs > 3_600_000)) {
    throw new DragnetError(Codes.PARAMS, "upgrade: the health timeout is 5 s to 1 h");
  }
}
