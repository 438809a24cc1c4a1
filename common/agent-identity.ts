import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { Codes, DragnetError } from "./errors.js";

// What an agent sends is signed with its own NATS key (the nkey whose seed is
// in its .creds file, never sent anywhere), and carries its NATS user JWT,
// signed by the fleet account, whose permissions name the agent. The
// coordinator trusts a message only when the JWT is the account's, names the
// agent of the subject, and the signature over subject and payload verifies
// with the JWT's key: bytes the NATS server itself publishes on an agent's
// subject (a JetStream reply sent wherever its requester chose) carry no such
// signature, and one agent's credentials cannot speak for another.

export const AGENT_JWT_HEADER = "Dragnet-Agent-Jwt";
export const AGENT_SIG_HEADER = "Dragnet-Agent-Sig";
const CONTEXT = Buffer.from("dragnet-agent-message-v1\n");
/** NATS JWTs are a few hundred bytes; anything far larger is not one. */
const MAX_JWT = 8192;

// ---- nkeys: base32 (RFC 4648, no padding) with a prefix byte and a CRC-16 ----

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const NKEY_PREFIX = { user: 20 << 3, account: 0 } as const;
const SEED_PREFIX = 18 << 3;

function base32Decode(text: string): Buffer | undefined {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    const i = BASE32.indexOf(c);
    if (i < 0) return undefined;
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** CRC-16/XMODEM, as nkeys append it (little-endian). */
function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const b of data) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

function base32Encode(data: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of data) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return bits > 0 ? out + BASE32[(value << (5 - bits)) & 31] : out;
}

/** The public nkey (U…, A…) of a raw 32-byte Ed25519 key. */
export function publicNkey(raw: Uint8Array, type: keyof typeof NKEY_PREFIX): string {
  const body = Buffer.concat([Buffer.from([NKEY_PREFIX[type]]), raw]);
  const crc = Buffer.alloc(2);
  crc.writeUInt16LE(crc16(body));
  return base32Encode(Buffer.concat([body, crc]));
}

function checked(text: string): Buffer | undefined {
  const raw = base32Decode(text);
  if (!raw || raw.length < 3) return undefined;
  const body = raw.subarray(0, raw.length - 2);
  return raw.readUInt16LE(raw.length - 2) === crc16(body) ? body : undefined;
}

/** The raw 32-byte Ed25519 key of a public nkey of this type, or undefined. */
export function publicNkeyBytes(nkey: string, type: keyof typeof NKEY_PREFIX): Buffer | undefined {
  const body = checked(nkey);
  return body?.length === 33 && body[0] === NKEY_PREFIX[type] ? body.subarray(1) : undefined;
}

function ed25519Public(raw: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
}

// ---- the NATS .creds file ----

/** The user JWT and nkey seed of a NATS .creds file. */
export function parseCreds(text: string): { jwt: string; seed: string } {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  const after = (begin: string) => {
    const i = lines.indexOf(`-----BEGIN ${begin}-----`);
    return i >= 0 ? lines[i + 1] : undefined;
  };
  const jwt = after("NATS USER JWT");
  const seed = after("USER NKEY SEED");
  if (!jwt || !seed) throw new DragnetError(Codes.CONFIG, "not a NATS .creds file (no user JWT or seed)");
  return { jwt, seed };
}

interface JwtClaims {
  iss?: unknown;
  sub?: unknown;
  name?: unknown;
  exp?: unknown;
  nats?: { pub?: { allow?: unknown } };
}

/** The claims of a JWT signed (ed25519-nkey) by `issuer`; undefined when it is not one. */
function verifiedClaims(jwt: string, issuer: KeyObject): JwtClaims | undefined {
  const parts = jwt.split(".");
  if (parts.length !== 3 || jwt.length > MAX_JWT) return undefined;
  const [head, payload, sig] = parts as [string, string, string];
  try {
    const signature = Buffer.from(sig, "base64url");
    if (!verify(null, Buffer.from(`${head}.${payload}`), issuer, signature)) return undefined;
    return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as JwtClaims;
  } catch {
    return undefined;
  }
}

/** When a JWT was issued and expires (seconds since the epoch; exp 0: never), unverified: for its holder. */
export function jwtLifetime(jwt: string): { iat: number; exp: number } {
  try {
    const c = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      iat?: unknown;
      exp?: unknown;
    };
    return { iat: typeof c.iat === "number" ? c.iat : 0, exp: typeof c.exp === "number" ? c.exp : 0 };
  } catch {
    return { iat: 0, exp: 0 };
  }
}

/** The issuer (an account's public nkey) of a JWT, unverified: for the coordinator to learn its own account. */
export function jwtIssuer(jwt: string): string {
  try {
    const claims = JSON.parse(
      Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8"),
    ) as JwtClaims;
    if (typeof claims.iss === "string" && publicNkeyBytes(claims.iss, "account")) return claims.iss;
  } catch {
    // not a JWT
  }
  throw new DragnetError(Codes.CONFIG, "the NATS credentials' JWT names no account that issued it");
}

function badSignature(subject: string): DragnetError {
  return new DragnetError(
    Codes.AGENT_SIGNATURE,
    `the agent signature of a message on ${subject} does not verify`,
  );
}

function signedBytes(subject: string, payload: Uint8Array): Buffer {
  return Buffer.concat([CONTEXT, Buffer.from(subject), Buffer.from("\n"), payload]);
}

// ---- the agent's side ----

/** The Ed25519 private key of an nkey seed (S…), for node:crypto (nkeys' own signing is far slower). */
export function seedPrivateKey(seed: string): KeyObject {
  const body = checked(seed);
  // A seed: two prefix bytes (seed, then the key's type), and the 32-byte Ed25519 seed.
  if (body?.length !== 34 || (body[0]! & 0xf8) !== SEED_PREFIX) {
    throw new DragnetError(Codes.CONFIG, "not an nkey seed");
  }
  return createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, body.subarray(2)]),
    format: "der",
    type: "pkcs8",
  });
}

/** Signs what an agent publishes, with the key of its own NATS credentials. */
export class AgentSigner {
  constructor(
    readonly jwt: string,
    private readonly key: KeyObject,
  ) {}

  static fromCreds(text: string): AgentSigner {
    const { jwt, seed } = parseCreds(text);
    try {
      return new AgentSigner(jwt, seedPrivateKey(seed));
    } catch {
      throw new DragnetError(Codes.CONFIG, "the NATS credentials hold no user nkey seed");
    }
  }

  /** The headers that authenticate `payload` published on `subject`. */
  sign(subject: string, payload: Uint8Array): Record<string, string> {
    return {
      [AGENT_JWT_HEADER]: this.jwt,
      [AGENT_SIG_HEADER]: sign(null, signedBytes(subject, payload), this.key).toString("base64url"),
    };
  }
}

/** DER prefix of a PKCS#8 Ed25519 private key (RFC 8410): the 32-byte seed follows. */
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

// ---- the coordinator's side ----

interface KnownAgentKey {
  agentId: string;
  /** The agent's public nkey (the JWT's subject). */
  userKey: string;
  key: KeyObject;
  /** Seconds since the epoch; 0 when the JWT does not expire. */
  exp: number;
}

/**
 * Checks that a message published on an agent's subject was signed by that
 * agent. JWTs already verified are remembered (bounded), so a message costs
 * one Ed25519 verification.
 */
export class AgentVerifier {
  private readonly account: KeyObject;
  private readonly known = new Map<string, KnownAgentKey | null>();

  constructor(
    accountNkey: string,
    private readonly prefix: string,
    private readonly now: () => number = Date.now,
    private readonly revoked: (agentId: string, userKey: string) => boolean = () => false,
  ) {
    const raw = publicNkeyBytes(accountNkey, "account");
    if (!raw) throw new DragnetError(Codes.CONFIG, `"${accountNkey.slice(0, 60)}" is not an account nkey`);
    this.account = ed25519Public(raw);
  }

  /** Forgets verified JWTs (after a revocation). */
  forget(): void {
    this.known.clear();
  }

  /**
   * Throws DragnetError(AGENT_UNSIGNED) when the message carries no agent
   * signature, and DragnetError(AGENT_SIGNATURE) when it is not `agentId`'s
   * (or that agent was revoked). Returns the agent's public nkey.
   */
  check(
    agentId: string,
    subject: string,
    payload: Uint8Array,
    headers: { get(name: string): string } | undefined,
    /** When the message was sent (a stream's receipt time); now by default. */
    sentAtMs = this.now(),
  ): string {
    const { who, sig } = this.credentialsOf(agentId, subject, headers, sentAtMs);
    let ok = false;
    try {
      ok = verify(null, signedBytes(subject, payload), who.key, sig);
    } catch {
      ok = false;
    }
    if (!ok) throw badSignature(subject);
    return who.userKey;
  }

  /**
   * check(), with the Ed25519 verification on libuv's thread pool: the event loop spends about
   * a third of a verification handing it over, and the other cores do the rest. For the
   * messages every agent sends (heartbeats, acks, results); what it refuses, it rejects with.
   */
  checkAsync(
    agentId: string,
    subject: string,
    payload: Uint8Array,
    headers: { get(name: string): string } | undefined,
    sentAtMs = this.now(),
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const { who, sig } = this.credentialsOf(agentId, subject, headers, sentAtMs);
      verify(null, signedBytes(subject, payload), who.key, sig, (err, ok) => {
        if (err || !ok) reject(badSignature(subject));
        else resolve(who.userKey);
      });
    });
  }

  /** The signing key a message's JWT names, checked to be `agentId`'s, unrevoked and unexpired, and its signature. */
  private credentialsOf(
    agentId: string,
    subject: string,
    headers: { get(name: string): string } | undefined,
    sentAtMs: number,
  ): { who: KnownAgentKey; sig: Buffer } {
    const jwt = headers?.get(AGENT_JWT_HEADER) ?? "";
    const sig = headers?.get(AGENT_SIG_HEADER) ?? "";
    if (!jwt || !sig) {
      throw new DragnetError(Codes.AGENT_UNSIGNED, `a message on ${subject} carries no agent signature`);
    }
    const who = this.keyOf(jwt);
    if (who && who.agentId === agentId && this.revoked(agentId, who.userKey)) {
      throw new DragnetError(Codes.AGENT_SIGNATURE, `agent ${agentId} was revoked: what it sends is refused`);
    }
    if (!who || who.agentId !== agentId) {
      throw new DragnetError(
        Codes.AGENT_SIGNATURE,
        `a message on ${subject} carries credentials that are not agent ${agentId}'s`,
      );
    }
    if (who.exp && who.exp * 1000 <= sentAtMs) {
      throw new DragnetError(Codes.AGENT_SIGNATURE, `agent ${agentId}'s NATS credentials have expired`);
    }
    return { who, sig: Buffer.from(sig, "base64url") };
  }

  /** The agent a JWT of the fleet account names (by the heartbeat subject it may publish), with its key. */
  private keyOf(jwt: string): KnownAgentKey | undefined {
    const cached = this.known.get(jwt);
    if (cached !== undefined) return cached ?? undefined;
    const claims = verifiedClaims(jwt, this.account);
    let found: KnownAgentKey | null = null;
    const allow = claims?.nats?.pub?.allow;
    const hb = Array.isArray(allow)
      ? allow.find((s): s is string => typeof s === "string" && s.startsWith(`${this.prefix}.hb.`))
      : undefined;
    const userKey = typeof claims?.sub === "string" ? publicNkeyBytes(claims.sub, "user") : undefined;
    if (claims && hb && userKey) {
      found = {
        agentId: hb.slice(`${this.prefix}.hb.`.length),
        userKey: claims.sub as string,
        key: ed25519Public(userKey),
        exp: typeof claims.exp === "number" ? claims.exp : 0,
      };
    }
    if (this.known.size > 100_000) this.known.clear();
    this.known.set(jwt, found);
    return found ?? undefined;
  }
}
