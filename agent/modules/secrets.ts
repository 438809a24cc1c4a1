// Secrets an investigation must find but never carry: a private key, a NATS
// seed or a password hash is reported where it is — never what it is. The
// memory module masks them in the context it returns (the match is still
// reported, with its address); drift keeps no text of a file that holds one
// (its changes are still reported, by hash).

/** What a secret looks like, and its name in the mask that replaces it. */
const SHAPES: ReadonlyArray<{ name: string; re: RegExp }> = [
  // The whole block, to its end line (or the end of the text).
  {
    name: "private key",
    re: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|$)/,
  },
  // NATS seeds: user, account, operator, server, cluster (S then the key type, base32).
  { name: "NATS seed", re: /\bS[UAONC][A-Z2-7]{56}\b/ },
  { name: "Dragnet key", re: /"kind"\s*:\s*"dragnet-investigator-key"/ },
  // crypt(3) hashes as /etc/shadow holds them: $id$salt$hash.
  { name: "password hash", re: /\$(1|2[abxy]?|5|6|y|gy)\$[./A-Za-z0-9$]{8,}/ },
  { name: "AWS secret key", re: /aws_secret_access_key\s*[=:]\s*\S{20,}/i },
];

/** Files whose text is secret whatever it holds. */
const SECRET_PATHS = /^\/etc\/g?shadow-?$|\.(creds|key)$|\/\.ssh\/id_[a-z0-9]+$/;

/** The kind of secret the text or its path holds, if any. */
export function secretIn(text: string, path = ""): string | undefined {
  if (SECRET_PATHS.test(path)) return "secret file";
  return SHAPES.find((s) => s.re.test(text))?.name;
}

/** The text with every secret-shaped run replaced by `[redacted: <kind>]`. */
export function maskSecrets(text: string): string {
  let out = text;
  for (const s of SHAPES) {
    out = out.replace(new RegExp(s.re.source, `g${s.re.flags}`), `[redacted: ${s.name}]`);
  }
  return out;
}
