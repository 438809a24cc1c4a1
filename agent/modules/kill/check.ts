import { Codes, DragnetError } from "../../../common/mod.js";
import type { KillParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

export const SIGNALS = { KILL: "SIGKILL", TERM: "SIGTERM" } as const;

export function checkKill(p: KillParams): void {
  const refuse = (m: string): never => {
    throw new DragnetError(Codes.PARAMS, `kill: ${m}`);
  };
  if (!Number.isInteger(p.pid) || p.pid < 2)
    refuse(`pid ${p.pid} cannot be killed (give the pid of a process, not 0 or 1)`);
  optionalRegex("kill: expected name regex", p.expectName);
  if (p.expectExeSha256 && !/^[0-9a-fA-F]{64}$/.test(p.expectExeSha256))
    refuse("expected exe SHA-256 is not 64 hex digits");
  if (p.signal && !(p.signal.toUpperCase() in SIGNALS))
    refuse(`signal is KILL or TERM, not "${p.signal.slice(0, 20)}"`);
}
