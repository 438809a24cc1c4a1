import { createHash } from "node:crypto";

// One line of an authorized_keys (or .pub) file as sshd and ssh-keygen read
// it: optional options, the key type, the base64 key blob, a comment. The
// blob is decoded to tell the key's size and to fingerprint it as
// `ssh-keygen -lf` does (SHA-256 over the blob, base64 without padding).

/** The public fields after the type name in each kind of blob (RFC 4253, 5656, 8709; OpenSSH's PROTOCOL.u2f). */
type Field = "mpint" | "string";
const LAYOUTS: Record<string, { fields: Field[]; bits: (f: Buffer[]) => number }> = {
  "ssh-rsa": { fields: ["mpint", "mpint"], bits: (f) => bitLength(f[1]!) },
  "ssh-dss": { fields: ["mpint", "mpint", "mpint", "mpint"], bits: (f) => bitLength(f[0]!) },
  "ecdsa-sha2-nistp256": { fields: ["string", "string"], bits: curveBits },
  "ecdsa-sha2-nistp384": { fields: ["string", "string"], bits: curveBits },
  "ecdsa-sha2-nistp521": { fields: ["string", "string"], bits: curveBits },
  "ssh-ed25519": { fields: ["string"], bits: () => 256 },
  "sk-ecdsa-sha2-nistp256@openssh.com": { fields: ["string", "string", "string"], bits: curveBits },
  "sk-ssh-ed25519@openssh.com": { fields: ["string", "string"], bits: () => 256 },
};
const CURVE_BITS: Record<string, number> = { nistp256: 256, nistp384: 384, nistp521: 521 };
const CERT_SUFFIX = "-cert-v01@openssh.com";

function curveBits(f: Buffer[]): number {
  return CURVE_BITS[f[0]!.toString("latin1")] ?? 0;
}

/** Bits of an unsigned big-endian integer (an mpint's leading zero byte ignored), as OpenSSL's BN_num_bits. */
function bitLength(b: Buffer): number {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  if (i === b.length) return 0;
  return (b.length - i - 1) * 8 + (32 - Math.clz32(b[i]!));
}

/** The plain key type a certificate type certifies ("ssh-ed25519-cert-v01@openssh.com" → "ssh-ed25519"). */
function plainType(type: string): string | undefined {
  if (LAYOUTS[type]) return type;
  if (!type.endsWith(CERT_SUFFIX)) return undefined;
  const base = type.slice(0, -CERT_SUFFIX.length);
  const plain = base.startsWith("sk-") ? `${base}@openssh.com` : base;
  return LAYOUTS[plain] ? plain : undefined;
}

export function isKeyType(type: string): boolean {
  return plainType(type) !== undefined;
}

class Reader {
  private at = 0;
  constructor(private readonly b: Buffer) {}
  string(): Buffer {
    if (this.at + 4 > this.b.length) throw new Error("truncated");
    const n = this.b.readUInt32BE(this.at);
    if (this.at + 4 + n > this.b.length) throw new Error("truncated");
    const s = this.b.subarray(this.at + 4, this.at + 4 + n);
    this.at += 4 + n;
    return s;
  }
  get done(): boolean {
    return this.at === this.b.length;
  }
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

export interface KeyInfo {
  type: string;
  bits: number;
  /** "SHA256:" and unpadded base64, as ssh-keygen -lf prints it. */
  fingerprint: string;
}

/**
 * A key blob's size and fingerprint, or a reason it is not a key of `type`.
 * A certificate is fingerprinted as ssh-keygen does: over the plain key it
 * certifies (the certificate's own fields left out).
 */
export function decodeBlob(type: string, blob: Buffer): KeyInfo | string {
  const plain = plainType(type);
  if (!plain) return `unknown key type "${type.slice(0, 60)}"`;
  const layout = LAYOUTS[plain]!;
  try {
    const r = new Reader(blob);
    if (r.string().toString("latin1") !== type) return "the key blob's type differs from the line's";
    if (plain !== type) r.string(); // a certificate's nonce
    const fields = layout.fields.map(() => r.string());
    // A plain key is nothing but these fields; a certificate goes on with serial, principals…
    if (plain === type && !r.done) return "trailing data after the key";
    if (plain === "ssh-ed25519" && fields[0]!.length !== 32) return "an Ed25519 key is not 32 bytes";
    const plainBlob = Buffer.concat([sshString(Buffer.from(plain, "latin1")), ...fields.map(sshString)]);
    const digest = createHash("sha256").update(plainBlob).digest("base64").replace(/=+$/, "");
    return { type, bits: layout.bits(fields), fingerprint: `SHA256:${digest}` };
  } catch {
    return "the key blob is truncated";
  }
}

export interface KeyLine extends KeyInfo {
  comment: string;
  /** Each option as written (command="a,b" keeps its quotes and commas). */
  options: string[];
}

/** Past the options field: to the first space or tab outside double quotes (\" escapes a quote), as sshd reads it. */
function optionsEnd(line: string): number {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && line[i + 1] === '"') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === " " || c === "\t")) return i;
  }
  return line.length;
}

/** The options field split at commas outside double quotes. */
export function splitOptions(field: string): string[] {
  const out: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < field.length; i++) {
    const c = field[i];
    if (c === "\\" && field[i + 1] === '"') i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted) {
      out.push(field.slice(start, i));
      start = i + 1;
    }
  }
  out.push(field.slice(start));
  return out.filter(Boolean);
}

/** "type base64 [comment]" at the start of `text`, or undefined when it does not start with a key. */
function readKey(text: string): (KeyInfo & { comment: string }) | string | undefined {
  const m = /^(\S+)[ \t]+([A-Za-z0-9+/]+={0,2})(?:[ \t]+(.*))?$/.exec(text);
  if (!m || !isKeyType(m[1]!)) return undefined;
  const info = decodeBlob(m[1]!, Buffer.from(m[2]!, "base64"));
  if (typeof info === "string") return info;
  return { ...info, comment: (m[3] ?? "").trim() };
}

/**
 * One line: undefined for blank lines and comments, a reason for a line that
 * holds no readable key, else the key. As sshd: a line is first read as a
 * bare key, then as options followed by a key.
 */
export function parseKeyLine(raw: string): KeyLine | string | undefined {
  const line = raw.replace(/\r$/, "").replace(/^[ \t]+/, "");
  if (!line || line.startsWith("#")) return undefined;
  const bare = readKey(line);
  if (typeof bare === "object") return { ...bare, options: [] };
  const end = optionsEnd(line);
  const keyed = readKey(line.slice(end).replace(/^[ \t]+/, ""));
  if (typeof keyed === "object") return { ...keyed, options: splitOptions(line.slice(0, end)) };
  return keyed ?? bare ?? "no key type and key on this line";
}
