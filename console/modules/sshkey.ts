import type { Command } from "commander";
import type { Operation, SshKey, SshkeyParams, SshkeyResult } from "../../proto/api.js";
import { addActionFlags, handle, uint32 } from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { Row } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet sshkey`: whose authorized_keys holds a key we never issued, and
// which hosts carry a given key — every key sshd would accept, with its SHA256
// fingerprint as ssh-keygen -lf prints it, and the hosts' own keys.

const row = (kind: string, k: SshKey): Row => ({
  kind,
  user: k.user,
  type: k.type,
  bits: k.bits,
  fingerprint: k.fingerprint,
  comment: k.comment,
  options: k.options,
  path: k.path,
  line: k.line,
});

const formatter: ModuleFormatter<SshkeyResult> = {
  columns: [
    { key: "kind", header: "kind" },
    { key: "user", header: "user" },
    { key: "type", header: "type" },
    { key: "bits", header: "bits" },
    { key: "fingerprint", header: "fingerprint" },
    { key: "comment", header: "comment" },
    { key: "options", header: "options", show: (v) => (Array.isArray(v) ? v.join(",") : "") },
    { key: "path", header: "file", show: (v, r) => `${String(v)}:${String(r.line)}` },
  ],
  rows: (r) => [
    ...r.authorized.map((k) => row("authorized", k)),
    // Host keys marked as such: they let this host be recognised, nobody in.
    ...r.hostKeys.map((k) => row("host key", k)),
  ],
};

interface SshkeyFlags {
  fingerprint?: string;
  type?: string;
  user?: string;
  comment?: string;
  hostKeys?: boolean;
  maxKeys?: number;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("sshkey")
    .description(
      "authorized SSH keys (every file sshd reads: passwd homes and sshd_config's AuthorizedKeysFile) and host keys",
    )
    .option("--fingerprint <SHA256:…>", "only this key, as ssh-keygen -lf prints its fingerprint")
    .option("--type <type>", "only this key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256…)")
    .option("--user <regex>", "regex on the user the key lets in (leaves host keys out)")
    .option("--comment <regex>", "regex on the key's comment")
    .option("--no-host-keys", "leave out the host's own keys")
    .option(
      "--max-keys <n>",
      "at most this many keys per host (default 1000; the rest counted)",
      uint32("--max-keys"),
    );
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet sshkey -t all --fingerprint SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8   # which hosts let this key in
  dragnet sshkey -t 'tags.env == "prod"' --user '^root$'                                   # who can log in as root
  dragnet sshkey -t all --type ssh-dss                                                       # DSA keys still accepted
  dragnet sshkey -t 'hostname ~ "^web-"' --comment 'deploy@'`,
  );
  cmd.action(
    handle(async (flags: SshkeyFlags & Parameters<SendAction>[1], command: Command) => {
      const params: SshkeyParams = {
        fingerprint: flags.fingerprint ?? "",
        type: flags.type ?? "",
        user: flags.user ?? "",
        comment: flags.comment ?? "",
        // commander's --no-host-keys sets hostKeys to false.
        noHostKeys: flags.hostKeys === false,
        maxKeys: flags.maxKeys ?? 0,
      };
      return send(command, flags, nameWith("sshkey", params), [
        { module: { $case: "sshkey", value: params } },
      ]);
    }),
  );
}

/**
 * MIG's sshkey parameters: {"paths": [...], "maxdepth": N}. MIG walks /root
 * and /home (or `paths`) for key files; Dragnet reads the files sshd reads.
 * With neither set (MIG's defaults) the question is the same one — which keys
 * are on this host — and becomes one sshkey operation; `paths` and `maxdepth`
 * name a directory walk Dragnet's sshkey does not do, and are refused.
 */
function fromMig(parameters: unknown, notes: Notes): Operation[] {
  const p = (parameters ?? {}) as Record<string, unknown>;
  if (typeof p !== "object" || Array.isArray(p))
    throw new SearchFormatError("sshkey parameters are not an object");
  const known = new Set(["paths", "maxdepth"]);
  for (const key of Object.keys(p))
    if (!known.has(key))
      throw new SearchFormatError(`sshkey parameter "${key}" is not one of MIG's (paths, maxdepth)`);
  // Go marshals an unset list as null and an unset depth as 0: those are MIG's defaults.
  const set = (v: unknown) =>
    v !== undefined && v !== null && v !== 0 && !(Array.isArray(v) && v.length === 0);
  const names = ["paths", "maxdepth"].filter((k) => set(p[k]));
  if (names.length)
    throw new SearchFormatError(
      `sshkey ${names.join(", ")} ${names.length > 1 ? "have" : "has"} no Dragnet equivalent: Dragnet's sshkey reads the authorized_keys files sshd reads, it does not walk directories (search key files with \`dragnet file\`)`,
    );
  notes.push(
    "sshkey: MIG also lists private and public key files under /root and /home; Dragnet lists every user's authorized keys and the host keys",
  );
  return [
    {
      module: {
        $case: "sshkey",
        value: { fingerprint: "", type: "", user: "", comment: "", noHostKeys: false, maxKeys: 0 },
      },
    },
  ];
}

export const sshkeyConsole = defineConsoleModule({
  name: "sshkey",
  commands: ["sshkey"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "sshkey", convert: fromMig },
});
