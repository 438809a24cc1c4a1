import { Codes, DragnetError } from "../../../common/mod.js";
import type { ProcessParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

/** A process filter (also the memory module's choice of processes), validated and compiled. */
export interface CompiledProcessFilter {
  name?: RegExp;
  cmdline?: RegExp;
  exe?: RegExp;
  uid?: number;
  userName?: string;
  sha256: Set<string>;
  excluded: Set<number>;
}

export function compileProcessFilter(p: ProcessParams): CompiledProcessFilter {
  const sha256 = new Set<string>();
  for (const h of p.exeSha256) {
    if (!/^[0-9a-fA-F]{64}$/.test(h))
      throw new DragnetError(Codes.PARAMS, `"${h}" is not a SHA-256 (64 hex digits)`);
    sha256.add(h.toLowerCase());
  }
  if (p.user.length > 256) throw new DragnetError(Codes.PARAMS, "process user is too long");
  if (p.excludePids.length > 1000) throw new DragnetError(Codes.PARAMS, "more than 1,000 pids to leave out");
  return {
    name: optionalRegex("process name regex", p.name),
    cmdline: optionalRegex("process cmdline regex", p.cmdline),
    exe: optionalRegex("process exe regex", p.exe),
    uid: /^\d+$/.test(p.user) ? Number(p.user) : undefined,
    userName: p.user && !/^\d+$/.test(p.user) ? p.user : undefined,
    sha256,
    excluded: new Set(p.excludePids),
  };
}

export function checkProcess(params: ProcessParams): void {
  compileProcessFilter(params);
}
