import { join } from "node:path";
import type { SshKey, SshkeyParams, SshkeyResult } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";
import { boundErrors } from "../error-list.js";
import { packageRoot } from "../host/package-files.js";
import { readPasswd } from "../host/passwd.js";
import { readSmallText } from "../host/small-file.js";
import { defineModule } from "../registry.js";
import { timeSlicer } from "../time-slice.js";
import { checkSshkey, DEFAULT_MAX_KEYS } from "./check.js";
import { parseKeyLine } from "./keys.js";
import { expandPattern, glob, readSshdConfig } from "./sshd-config.js";

// `sshkey`: the keys that let someone in — every authorized_keys file sshd
// would read (each passwd user's home and sshd_config's AuthorizedKeysFile
// patterns) — and the host's own public keys, each with its type, size,
// SHA256 fingerprint as ssh-keygen -lf prints it, comment and options. Only
// public keys are read: private host keys are never opened.

/** authorized_keys files are small; a bigger one is skipped rather than read into memory. */
export const MAX_FILE_BYTES = 1024 * 1024;

type FileKeys = { line: number; key: ReturnType<typeof parseKeyLine> }[];

/** A file's keys, or undefined when it is not there (most users have no authorized_keys). */
async function readKeyFile(path: string, errors: string[]): Promise<FileKeys | undefined> {
  const text = await readSmallText(path, errors, { optional: true, maxBytes: MAX_FILE_BYTES });
  return text
    ?.split("\n")
    .map((line, i) => ({ line: i + 1, key: parseKeyLine(line) }))
    .filter((l) => l.key !== undefined);
}

export interface SshkeyOptions {
  /** The tree whose /etc/passwd, sshd_config and homes are read ("/" on an agent). */
  root: string;
  signal: AbortSignal;
}

export async function findSshKeys(p: SshkeyParams, { root, signal }: SshkeyOptions): Promise<SshkeyResult> {
  const user = optionalRegex("sshkey: user regex", p.user);
  const comment = optionalRegex("sshkey: comment regex", p.comment);
  const max = p.maxKeys || DEFAULT_MAX_KEYS;
  const slice = timeSlicer(signal);
  const result: SshkeyResult = {
    authorized: [],
    hostKeys: [],
    files: [],
    errors: [],
    leftOut: 0,
    authorizedKeysCommand: "",
  };
  const wanted = (k: SshKey) =>
    (!p.fingerprint || k.fingerprint === p.fingerprint) &&
    (!p.type || k.type === p.type) &&
    (!comment || comment.test(k.comment));
  const take = (list: SshKey[], k: SshKey) => {
    if (!wanted(k)) return;
    if (result.authorized.length + result.hostKeys.length < max) list.push(k);
    else result.leftOut++;
  };
  // Each file read once, however many users it serves (a home shared by several users).
  const cache = new Map<string, FileKeys | undefined>();
  const keysOf = async (path: string, who: string, list: SshKey[]) => {
    const first = !cache.has(path);
    if (first) cache.set(path, await readKeyFile(path, result.errors));
    const lines = cache.get(path);
    if (!lines) return false;
    for (const { line, key } of lines) {
      if (typeof key === "string") {
        if (first) result.errors.push(`${path}:${line}: ${key}`);
      } else if (key) take(list, { user: who, path, line, ...key });
    }
    await slice();
    return true;
  };

  const config = await readSshdConfig(root);
  result.errors.push(...config.errors);
  result.authorizedKeysCommand = config.authorizedKeysCommand;
  const patterns = [...new Set([...config.authorizedKeysFiles, ...config.matchAuthorizedKeysFiles])];
  const passwd = await readPasswd(root);
  result.errors.push(...passwd.errors);
  const read = new Set<string>();
  for (const u of passwd.entries) {
    if (user && !user.test(u.name)) continue;
    for (const pattern of patterns) {
      let path: string;
      try {
        path = join(root, expandPattern(pattern, u));
      } catch (err) {
        result.errors.push((err as Error).message);
        continue;
      }
      // A home shared by several users lets each of them in with its keys.
      if (await keysOf(path, u.name, result.authorized)) read.add(path);
    }
  }
  result.files = [...read];

  // Host keys belong to no user: a user filter leaves them out.
  if (!p.noHostKeys && !user) {
    const pubs = new Set([
      ...(await glob(root, "/etc/ssh/*.pub")),
      ...config.hostKeys.map((k) => (k.startsWith("/") ? k : `/etc/ssh/${k}`)).map((k) => `${k}.pub`),
    ]);
    for (const pub of pubs) await keysOf(join(root, pub), "", result.hostKeys);
  }
  return result;
}

export const sshkeyModule = defineModule({
  name: "sshkey",
  check: checkSshkey,
  async run(p, ctx) {
    const result = await findSshKeys(p, { root: packageRoot(), signal: ctx.signal });
    result.errors = boundErrors(result.errors);
    return { found: result.authorized.length + result.hostKeys.length > 0, result };
  },
});
