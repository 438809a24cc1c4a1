import { Codes, DragnetError } from "../../../common/mod.js";
import { type MemoryParams, ProcessParams } from "../../../proto/mod.js";
import { userRegex } from "../check-kit.js";
import { checkProcess } from "../process/check.js";

const DEFAULT_MAX_BYTES = 1024 ** 3;
const DEFAULT_MAX_MATCHES = 100;

export interface Needle {
  bytes?: Buffer;
  regex?: RegExp;
}

export function memoryNeedle(p: { string: string; hex: string; regex: string }): Needle {
  const given = [p.string, p.hex, p.regex].filter((v) => v !== "").length;
  if (given !== 1)
    throw new DragnetError(Codes.PARAMS, "memory search takes exactly one of a string, hex bytes or a regex");
  if (p.string) {
    if (p.string.length > 4096)
      throw new DragnetError(Codes.PARAMS, "memory search string is longer than 4096");
    return { bytes: Buffer.from(p.string, "utf8") };
  }
  if (p.hex) {
    const hex = p.hex.replace(/\s+/g, "");
    if (!/^([0-9a-fA-F]{2}){1,4096}$/.test(hex)) {
      throw new DragnetError(
        Codes.PARAMS,
        `memory search hex "${p.hex.slice(0, 80)}" is not an even number of hex digits`,
      );
    }
    return { bytes: Buffer.from(hex, "hex") };
  }
  return { regex: userRegex("memory search regex", p.regex, "g") };
}

const MAX_MATCHES_LIMIT = 10_000;

export function memoryBudgets(p: { maxBytes?: number; maxMatches?: number }): {
  maxBytes: number;
  maxMatches: number;
} {
  const maxBytes = p.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxMatches = p.maxMatches ?? DEFAULT_MAX_MATCHES;
  if (maxBytes < 1) throw new DragnetError(Codes.PARAMS, "memory max bytes must be at least 1");
  if (maxMatches < 1 || maxMatches > MAX_MATCHES_LIMIT) {
    throw new DragnetError(Codes.PARAMS, `memory max matches must be between 1 and ${MAX_MATCHES_LIMIT}`);
  }
  return { maxBytes, maxMatches };
}

export function checkMemory(params: MemoryParams): void {
  memoryNeedle(params);
  memoryBudgets(params);
  checkProcess(params.processes ?? ProcessParams.fromPartial({}));
}
