import { readdir } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import type { SudoRule } from "../../../proto/mod.js";
import { readSmallText } from "../host/small-file.js";

// sudoers as sudo reads it: ROOT/etc/sudoers, each #include/@include file and
// each file of an #includedir/@includedir directory (sudo's rule: names that
// end in "~" or hold a "." are skipped, the rest read in lexical order),
// relative includes relative to the including file, backslash continuations
// joined, comments dropped. Every other line is kept with its kind: user
// specifications, aliases and Defaults — the last because "!authenticate" or
// "env_keep += LD_PRELOAD" is what an intruder adds.

/** sudo's own limit on include nesting. */
const MAX_DEPTH = 128;

/** "#" starts a comment unless it is "#include…" or a uid ("#1000 ALL=…"), outside double quotes. */
function withoutComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "#" && !quoted && !/^#-?\d/.test(line.slice(i))) return line.slice(0, i);
  }
  return line;
}

function kindOf(rule: string): string {
  if (/^Defaults([:@>!]|\s|$)/.test(rule)) return "defaults";
  if (/^(User|Runas|Host|Cmnd|Cmd)_Alias\s/.test(rule)) return "alias";
  return "user";
}

/** An include directive's path: quoted or with backslash-escaped spaces; %h is this host's short name. */
function includePath(arg: string, from: string): string {
  const raw = arg.startsWith('"') ? arg.replace(/^"(.*)"$/, "$1") : arg.replace(/\\(.)/g, "$1");
  const path = raw.replace(/%h/g, hostname().split(".")[0]!);
  return isAbsolute(path) ? path : join(dirname(from), path);
}

/** Files read and rules kept at most: includes that fan out (a includes b twice, b includes c twice…) grow as powers of two. */
const MAX_FILE_VISITS = 1000;
const MAX_RULES = 5000;
const MAX_RULE_CHARS = 4096;

export async function readSudoers(root: string): Promise<{ rules: SudoRule[]; errors: string[] }> {
  const rules: SudoRule[] = [];
  const errors: string[] = [];
  const open = new Set<string>();
  let visits = 0;
  let full = false;

  const visitFile = async (rel: string, depth: number, optional: boolean): Promise<void> => {
    const path = join(root, rel);
    if (full) return;
    if (++visits > MAX_FILE_VISITS || rules.length >= MAX_RULES) {
      full = true;
      errors.push(
        `sudoers: more than ${MAX_FILE_VISITS} files read or ${MAX_RULES} rules kept: the rest not read`,
      );
      return;
    }
    if (open.has(path)) {
      errors.push(`${path}: includes itself (directly or not): not read again`);
      return;
    }
    const text = await readSmallText(path, errors, { optional });
    if (text === undefined) return;
    open.add(path);
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
      const first = i;
      let line = lines[i]!;
      // A backslash at the end of a line continues it on the next.
      while (line.endsWith("\\") && i + 1 < lines.length)
        line = `${line.slice(0, -1).trimEnd()} ${lines[++i]!.trim()}`;
      const trimmed = line.trim();
      const include = /^[#@](include|includedir)\s+(.+)$/.exec(trimmed);
      if (include) {
        if (depth + 1 >= MAX_DEPTH) {
          errors.push(`${path}:${first + 1}: includes nested deeper than ${MAX_DEPTH}`);
          continue;
        }
        const target = includePath(include[2]!.trim(), rel);
        if (include[1] === "include") await visitFile(target, depth + 1, false);
        else await visitDir(target, depth + 1);
        continue;
      }
      const rule = withoutComment(trimmed).trim();
      if (rule && rules.length < MAX_RULES)
        rules.push({ path, line: first + 1, rule: rule.slice(0, MAX_RULE_CHARS), kind: kindOf(rule) });
    }
    open.delete(path);
  };

  const visitDir = async (rel: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(join(root, rel));
    } catch (err) {
      // sudo goes on without a missing include directory; say so all the same.
      errors.push(`${join(root, rel)}: ${(err as Error).message}`);
      return;
    }
    for (const name of names.sort()) {
      if (name.endsWith("~") || name.includes(".")) continue;
      await visitFile(join(rel, name), depth, false);
    }
  };

  // No /etc/sudoers: no sudo here, nothing to say.
  await visitFile("/etc/sudoers", 0, true);
  return { rules, errors };
}
