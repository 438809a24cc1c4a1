import { readFile } from "node:fs/promises";
import { join } from "node:path";

// The local user and group databases as files: ROOT/etc/passwd and
// ROOT/etc/group, read directly (no NSS: a test tree, a mounted image and the
// host itself are read the same way; users from LDAP or sssd are not seen).
// Read by sshkey (whose authorized_keys to read), account (users and groups)
// and persistence (whose crontabs and shell startup files).

/**
 * What passwd's own password field holds — never its text: "shadow" ("x":
 * the password is in shadow), "empty" (no password at all), "locked" ("*",
 * "!…"), "hash" (an old-style hash in passwd itself, which login takes over
 * shadow's).
 */
export type PasswdPassword = "shadow" | "empty" | "locked" | "hash";

export interface PasswdEntry {
  name: string;
  password: PasswdPassword;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
  /** Line in the file (1-based). */
  line: number;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
  line: number;
}

export interface Parsed<T> {
  entries: T[];
  /** Lines that are not entries (wrong field count, bad ids): "path:line: why". */
  errors: string[];
}

/** A decimal id as the files hold it (no sign, no spaces), or undefined. */
function id(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0xffffffff ? n : undefined;
}

/** Lines of a colon-separated file that count: not empty, not comments, not NIS "+"/"-" escapes. */
function* records(text: string): Generator<[number, string[]]> {
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.trim() || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) continue;
    yield [i + 1, line.split(":")];
  }
}

export function parsePasswd(text: string, path = "/etc/passwd"): Parsed<PasswdEntry> {
  const out: Parsed<PasswdEntry> = { entries: [], errors: [] };
  for (const [line, f] of records(text)) {
    const uid = id(f[2]);
    const gid = id(f[3]);
    if (f.length !== 7 || !f[0] || uid === undefined || gid === undefined) {
      out.errors.push(`${path}:${line}: not a passwd entry (name:password:uid:gid:gecos:home:shell)`);
      continue;
    }
    const pw = f[1]!;
    const password: PasswdPassword =
      pw === "x" ? "shadow" : pw === "" ? "empty" : /^[!*]/.test(pw) ? "locked" : "hash";
    out.entries.push({ name: f[0], password, uid, gid, gecos: f[4]!, home: f[5]!, shell: f[6]!, line });
  }
  return out;
}

export function parseGroup(text: string, path = "/etc/group"): Parsed<GroupEntry> {
  const out: Parsed<GroupEntry> = { entries: [], errors: [] };
  for (const [line, f] of records(text)) {
    const gid = id(f[2]);
    if (f.length !== 4 || !f[0] || gid === undefined) {
      out.errors.push(`${path}:${line}: not a group entry (name:password:gid:members)`);
      continue;
    }
    out.entries.push({ name: f[0], gid, members: f[3]!.split(",").filter(Boolean), line });
  }
  return out;
}

async function readParsed<T>(
  root: string,
  rel: string,
  parse: (text: string, path: string) => Parsed<T>,
): Promise<Parsed<T>> {
  const path = join(root, rel);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    return { entries: [], errors: [`${path}: ${(err as Error).message}`] };
  }
  return parse(text, path);
}

/** ROOT/etc/passwd; a missing or unreadable file gives no entries and one error. */
export function readPasswd(root = "/"): Promise<Parsed<PasswdEntry>> {
  return readParsed(root, "etc/passwd", parsePasswd);
}

/** ROOT/etc/group; a missing or unreadable file gives no entries and one error. */
export function readGroup(root = "/"): Promise<Parsed<GroupEntry>> {
  return readParsed(root, "etc/group", parseGroup);
}
