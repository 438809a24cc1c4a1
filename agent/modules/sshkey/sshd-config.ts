import { readdir } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { readSmallText } from "../host/small-file.js";

// What sshd_config says about keys: where each user's authorized keys are
// (AuthorizedKeysFile), the host's key files (HostKey), and whether a program
// hands out keys too (AuthorizedKeysCommand). Read as sshd reads it: keywords
// in any case, "Keyword value" or "Keyword=value", quoted arguments, the first
// value of a keyword wins, Include (globs, relative to /etc/ssh) at any depth up
// to sshd's own limit of 16.

export const DEFAULT_AUTHORIZED_KEYS = [".ssh/authorized_keys", ".ssh/authorized_keys2"];
const MAX_DEPTH = 16;

export interface SshdKeys {
  /** AuthorizedKeysFile's patterns outside Match blocks (sshd's default when none). */
  authorizedKeysFiles: string[];
  /**
   * Patterns set inside Match blocks: sshd uses them for the users a block
   * matches; they are read for every user here (every file that may let someone in).
   */
  matchAuthorizedKeysFiles: string[];
  /** HostKey paths (private keys: only their ".pub" beside them is read). */
  hostKeys: string[];
  authorizedKeysCommand: string;
  /** The config files read, in order. */
  files: string[];
  errors: string[];
}

/** A line's arguments: whitespace-separated, double quotes group, an unquoted "#" word ends the line. */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    if (m[2]?.startsWith("#")) break;
    out.push(m[1] ?? m[2]!);
  }
  return out;
}

/** One glob component as a regex (* and ? and [..]; a leading dot only matched explicitly, as glob(3)). */
function componentRegex(part: string): RegExp {
  let re = "";
  for (let i = 0; i < part.length; i++) {
    const c = part[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = part.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        re += `[${part
          .slice(i + 1, end)
          .replace(/^!/, "^")
          .replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${part.startsWith(".") ? "" : "(?!\\.)"}${re}$`);
}

/** The paths an absolute glob names under `root`, sorted as glob(3) sorts them (root-relative). */
export async function glob(root: string, pattern: string): Promise<string[]> {
  let paths = ["/"];
  for (const part of pattern.split("/").filter(Boolean)) {
    const next: string[] = [];
    for (const dir of paths) {
      if (!/[*?[]/.test(part)) {
        next.push(join(dir, part));
        continue;
      }
      const re = componentRegex(part);
      const names = await readdir(join(root, dir)).catch(() => [] as string[]);
      for (const n of names.sort()) if (re.test(n)) next.push(join(dir, n));
    }
    paths = next;
  }
  return paths;
}

/** ROOT/etc/ssh/sshd_config (and what it includes); a missing file gives sshd's defaults. */
export async function readSshdConfig(root: string, path = "/etc/ssh/sshd_config"): Promise<SshdKeys> {
  const out: SshdKeys = {
    authorizedKeysFiles: [],
    matchAuthorizedKeysFiles: [],
    hostKeys: [],
    authorizedKeysCommand: "",
    files: [],
    errors: [],
  };
  let globalSet = false;
  let commandSet = false;
  const visit = async (file: string, depth: number, inMatch: boolean): Promise<void> => {
    // A missing file is no error, included or not: sshd takes an Include that matches nothing as none.
    const text = await readSmallText(join(root, file), out.errors, { optional: true });
    if (text === undefined) return;
    out.files.push(join(root, file));
    for (const [i, raw] of text.split("\n").entries()) {
      // "Keyword=value" is "Keyword value".
      const [key = "", ...args] = words(raw.replace(/^\s*(\w+)\s*=\s*/, "$1 "));
      switch (key.toLowerCase()) {
        case "match":
          // "Match all" ends a block as well as starting one that holds for everybody.
          inMatch = !(args.length === 1 && args[0]!.toLowerCase() === "all");
          break;
        case "include":
          if (depth + 1 >= MAX_DEPTH) {
            out.errors.push(`${join(root, file)}:${i + 1}: Include nested deeper than ${MAX_DEPTH}`);
            break;
          }
          for (const pattern of args) {
            const abs = isAbsolute(pattern) ? pattern : join("/etc/ssh", pattern);
            // An Include inside a Match block stays inside it: its lines are conditional
            // too. A Match inside an included file ends with that file, as in sshd.
            for (const f of await glob(root, abs)) await visit(f, depth + 1, inMatch);
          }
          break;
        case "authorizedkeysfile":
          if (inMatch) out.matchAuthorizedKeysFiles.push(...args.filter((a) => a !== "none"));
          else if (!globalSet) {
            globalSet = true;
            out.authorizedKeysFiles = args.filter((a) => a !== "none");
          }
          break;
        case "hostkey":
          out.hostKeys.push(...args.slice(0, 1));
          break;
        case "authorizedkeyscommand":
          if (!commandSet && !inMatch && args.length && args[0] !== "none") {
            commandSet = true;
            out.authorizedKeysCommand = args.join(" ");
          }
          break;
      }
    }
  };
  await visit(path, 0, false);
  if (!globalSet) out.authorizedKeysFiles = [...DEFAULT_AUTHORIZED_KEYS];
  return out;
}

/**
 * An AuthorizedKeysFile pattern for one user, as sshd expands it: %h home,
 * %u name, %U uid, %% a percent sign; a relative result is under the home.
 * A reason instead when the pattern holds a token sshd does not know here.
 */
export function expandPattern(pattern: string, user: { name: string; uid: number; home: string }): string {
  const expanded = pattern.replace(/%(.?)/g, (all, t: string) => {
    switch (t) {
      case "h":
        return user.home;
      case "u":
        return user.name;
      case "U":
        return String(user.uid);
      case "%":
        return "%";
      default:
        throw new Error(`AuthorizedKeysFile "${pattern}": unknown token "${all}"`);
    }
  });
  return isAbsolute(expanded) ? expanded : join(user.home, expanded);
}
