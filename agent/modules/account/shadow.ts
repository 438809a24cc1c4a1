import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { PasswdEntry } from "../host/passwd.js";
import type { PasswordState } from "./check.js";

// Password state from ROOT/etc/shadow. The hash is read to be classified and
// dropped on the spot: nothing derived from its text — not a prefix, not the
// algorithm — leaves this file.

export interface ShadowEntry {
  /** The state of the password field alone, before expiry is weighed. */
  field: "empty" | "locked" | "set";
  /** Days since 1970 of the last change; undefined when the field is empty. */
  changed?: number;
  /** Maximum password age in days (undefined: no maximum). */
  maxAge?: number;
  /** Day the account expires (undefined: never). */
  expires?: number;
}

const day = (text: string | undefined) => (text && /^\d{1,9}$/.test(text) ? Number(text) : undefined);

/** shadow(5) lines by user name; lines that are not entries are counted in `errors`. */
export function parseShadow(
  text: string,
  path: string,
): { entries: Map<string, ShadowEntry>; errors: string[] } {
  const entries = new Map<string, ShadowEntry>();
  const errors: string[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim() || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 8 || !f[0]) {
      errors.push(`${path}:${i + 1}: not a shadow entry`);
      continue;
    }
    const pw = f[1]!;
    entries.set(f[0], {
      field: pw === "" ? "empty" : /^[!*]/.test(pw) ? "locked" : "set",
      changed: day(f[2]),
      maxAge: day(f[4]),
      expires: day(f[7]),
    });
  }
  return { entries, errors };
}

export async function readShadow(
  root: string,
): Promise<{ entries: Map<string, ShadowEntry>; errors: string[] }> {
  const path = join(root, "etc/shadow");
  try {
    return parseShadow(await readFile(path, "utf8"), path);
  } catch (err) {
    return { entries: new Map(), errors: [`${path}: ${(err as Error).message}`] };
  }
}

/**
 * A user's password state on `today` (days since 1970), as login weighs it:
 * a password in passwd itself (not "x") is the one used; else shadow's.
 * "empty" and "locked" say what the field holds whatever the dates (an empty
 * password is what to fix even on an expired account); "expired" is a
 * password that would work but whose account expiry day has come (shadow's
 * rule: today ≥ expire), whose maximum age has passed (today ≥ last change +
 * max, for a max under 10000 days), or that must be changed at the next login (last change 0, passwd -e).
 */
export function passwordState(
  user: PasswdEntry,
  shadow: ShadowEntry | undefined,
  today: number,
): PasswordState {
  if (user.password === "empty") return "empty";
  if (user.password === "locked") return "locked";
  if (user.password === "shadow" && !shadow) return "none";
  const field = user.password === "hash" ? "set" : shadow!.field;
  if (field !== "set") return field;
  if (!shadow) return "set";
  if (shadow.expires !== undefined && shadow.expires > 0 && today >= shadow.expires) return "expired";
  if (shadow.changed === 0) return "expired";
  // A maximum of 10000 days or more is "never" to shadow's isexpired() (99999 is the usual one).
  const max = shadow.maxAge !== undefined && shadow.maxAge < 10_000 ? shadow.maxAge : undefined;
  if (shadow.changed !== undefined && max !== undefined && today >= shadow.changed + max) return "expired";
  return "set";
}
