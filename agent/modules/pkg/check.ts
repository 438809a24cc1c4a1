import { Codes, DragnetError } from "../../../common/mod.js";
import type { PkgParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

/** A version comparison: pure parsing, so the console carries it (the ordering is versions.ts). */
export interface VersionFilter {
  op: "<" | "<=" | "=" | ">=" | ">" | "!=";
  version: string;
}

/** "<3.0.11-1~deb12u1" as an operator and a version; undefined when it is not one. */
export function parseVersionFilter(text: string): VersionFilter | undefined {
  const m = /^(<=|>=|!=|<|>|=)\s*([A-Za-z0-9.+~:^_-]{1,128})$/.exec(text.trim());
  return m ? { op: m[1] as VersionFilter["op"], version: m[2]! } : undefined;
}

export const MANAGERS = ["dpkg", "rpm"] as const;

export function checkPkg(p: PkgParams): void {
  optionalRegex("pkg: name regex", p.name);
  if (p.version && !parseVersionFilter(p.version)) {
    throw new DragnetError(
      Codes.PARAMS,
      `pkg: version filter "${p.version.slice(0, 80)}" is not an operator (<, <=, =, >=, >, !=) and a version`,
    );
  }
  if (p.manager && !(MANAGERS as readonly string[]).includes(p.manager))
    throw new DragnetError(
      Codes.PARAMS,
      `pkg: manager is ${MANAGERS.join(" or ")}, not "${p.manager.slice(0, 20)}"`,
    );
}
