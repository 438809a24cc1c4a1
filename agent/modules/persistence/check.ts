import { Codes, DragnetError } from "../../../common/mod.js";
import type { PersistenceParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

/** The kinds of places persistence reports (a copy of entry.ts's, which the console may not import). */
export const PERSISTENCE_KINDS = [
  "cron",
  "systemd",
  "initd",
  "rc_local",
  "shell",
  "ld_preload",
  "udev",
  "kernel_module",
  "at",
] as const;

export function checkPersistence(p: PersistenceParams): void {
  optionalRegex("persistence: match regex", p.match);
  for (const kind of p.kinds)
    if (!(PERSISTENCE_KINDS as readonly string[]).includes(kind))
      throw new DragnetError(
        Codes.PARAMS,
        `persistence: kind "${kind.slice(0, 40)}" is not one of ${PERSISTENCE_KINDS.join(", ")}`,
      );
}
