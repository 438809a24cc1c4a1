import { Codes, DragnetError } from "../../../common/mod.js";

export { rulesSha256 } from "../../../common/mod.js";

import type { YaraParams } from "../../../proto/mod.js";
import { absolutePath, optionalRegex } from "../check-kit.js";
import { checkProcess } from "../process/check.js";

// What a yara operation may ask, checked by the console before it signs and
// by every agent before it runs: rules of bounded size (their text travels in
// the signed action; compiling them is the engine's job, done on both sides),
// and exactly one scope — files under absolute roots, or processes.

/** The YARA-X addon, as npm installs it: loaded by the console to compile, by agents run from source. */
export const YARA_ADDON = "@litko/yara-x-linux-x64-gnu/yara-x.linux-x64-gnu.node";

/** The rules' text in all, as signed: an action is kilobytes, a rule set is not a corpus. */
export const MAX_RULES_BYTES = 256 * 1024;
const MAX_RULE_FILES = 32;
const DEFAULT_MAX_DEPTH = 64;
const DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_BYTES = 1024 ** 3;
const DEFAULT_MAX_MATCHES = 1000;
const DEFAULT_MAX_STRINGS = 16;

export interface YaraBudgets {
  maxDepth: number;
  maxFileBytes: number;
  maxBytes: number;
  maxMatches: number;
  maxStrings: number;
}

export function yaraBudgets(p: YaraParams): YaraBudgets {
  const b = {
    maxDepth: p.maxDepth ?? DEFAULT_MAX_DEPTH,
    maxFileBytes: p.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
    maxBytes: p.maxBytes ?? DEFAULT_MAX_BYTES,
    maxMatches: p.maxMatches ?? DEFAULT_MAX_MATCHES,
    maxStrings: p.maxStrings ?? DEFAULT_MAX_STRINGS,
  };
  const refuse = (m: string): never => {
    throw new DragnetError(Codes.PARAMS, `yara: ${m}`);
  };
  if (b.maxDepth > 1024) refuse("max depth is at most 1024");
  if (b.maxFileBytes < 1) refuse("max file bytes must be at least 1");
  if (b.maxBytes < 1) refuse("max bytes must be at least 1");
  if (b.maxMatches < 1 || b.maxMatches > 100_000) refuse("max matches must be between 1 and 100000");
  if (b.maxStrings > 1000) refuse("max strings is at most 1000");
  return b;
}

export function checkYara(p: YaraParams): void {
  const refuse = (m: string): never => {
    throw new DragnetError(Codes.PARAMS, `yara: ${m}`);
  };
  if (p.rules.length === 0) refuse("no rules: give at least one rule file");
  if (p.rules.length > MAX_RULE_FILES) refuse(`more than ${MAX_RULE_FILES} rule files`);
  let size = 0;
  for (const r of p.rules) {
    if (!/^[\w.@+-][\w.@+ -]{0,127}$/.test(r.name))
      refuse(
        `a rule file's name must be 1 to 128 letters, digits, spaces or ._@+-, not "${r.name.slice(0, 60)}"`,
      );
    if (!r.text.trim()) refuse(`${r.name} holds no rules`);
    size += Buffer.byteLength(r.text);
  }
  if (size > MAX_RULES_BYTES) refuse(`the rules are ${size} bytes, over the limit of ${MAX_RULES_BYTES}`);
  const files = p.paths.length > 0;
  const memory = p.processes !== undefined;
  if (files === memory) refuse("give either paths to scan files or process filters to scan memory, not both");
  for (const path of p.paths) {
    if (!absolutePath(path)) refuse(`"${path.slice(0, 200)}" is not an absolute path`);
  }
  if (p.paths.length > 64) refuse("at most 64 paths");
  optionalRegex("yara: file name regex", p.name);
  if (memory) {
    if (p.name) refuse("a file name regex scans files: give paths, not process filters");
    checkProcess(p.processes!);
  }
  yaraBudgets(p);
}

/** The compiler's first error in a rule file, as people read it: "FILE line N: what" and YARA-X's excerpt with its caret. */
export function describeCompileError(
  file: string,
  e: { code: string; message: string; line?: number },
): string {
  const line = e.line ?? Number(/--> line:(\d+)/.exec(e.message)?.[1] ?? 0);
  const [first, ...rest] = e.message.split("\n");
  const what = (first ?? "").replace(/^error\[\w+\]: /, "");
  return `${file}${line ? ` line ${line}` : ""}: ${what} [${e.code}]${rest.length ? `\n${rest.join("\n")}` : ""}`;
}
