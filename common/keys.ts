import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  scryptSync,
} from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { Codes, DragnetError } from "./errors.js";
import { readableByOthers, writeFileAtomic } from "./files.js";

// Investigator keys are Ed25519 (node:crypto). A key id is the first 16 hex
// characters of SHA-256 over the raw 32-byte public key.

export const KEY_FILE_KIND = "dragnet-investigator-key";

export interface InvestigatorKey {
  name: string;
  keyId: string;
  publicKeyRaw: Buffer;
  privateKey: KeyObject;
}

/**
 * What an investigator may do (the keyring's `roles`):
 * - investigate: sign investigation actions (and sensitive ones), keep incidents;
 * - respond: sign response actions (isolate, kill, quarantine, collect, upgrade);
 * - approve: co-sign an action someone else submitted;
 * - read: read actions, results, agents, alerts, incidents, evidence and the audit log;
 * - admin: enrolment tokens and agent releases.
 */
export type Role = "investigate" | "respond" | "approve" | "read" | "admin";
export const ROLES: readonly Role[] = ["investigate", "respond", "approve", "read", "admin"];
/** An entry that names no roles has these: everything but admin, which must be given by name. */
export const DEFAULT_ROLES: readonly Role[] = ["investigate", "respond", "approve", "read"];

/** What an admin puts in a keyring: the public half, how much it counts, and what it may do. */
export interface TrustedInvestigator {
  name: string;
  keyId: string;
  publicKeyRaw: Buffer;
  publicKey: KeyObject;
  weight: number;
  roles: ReadonlySet<Role>;
}

export function keyIdOf(publicKeyRaw: Uint8Array): string {
  return createHash("sha256").update(publicKeyRaw).digest("hex").slice(0, 16);
}

export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: "jwk" });
  if (jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new DragnetError(Codes.CONFIG, "not an Ed25519 key");
  }
  return Buffer.from(jwk.x, "base64url");
}

export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) {
    throw new DragnetError(Codes.CONFIG, `an Ed25519 public key has 32 bytes, this one has ${raw.length}`);
  }
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export function checkInvestigatorName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new DragnetError(
      Codes.CONFIG,
      `investigator name "${name}" must be 1-64 letters, digits, '.', '_', '@' or '-'`,
    );
  }
  return name;
}

export function generateInvestigatorKey(name: string): InvestigatorKey {
  checkInvestigatorName(name);
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const publicKeyRaw = rawPublicKey(publicKey);
  return { name, keyId: keyIdOf(publicKeyRaw), publicKeyRaw, privateKey };
}

/** The public entry for a keyring, as JSON. */
export function publicEntryOf(key: { name: string; keyId: string; publicKeyRaw: Uint8Array }, weight = 1) {
  return {
    name: key.name,
    keyId: key.keyId,
    publicKey: Buffer.from(key.publicKeyRaw).toString("base64"),
    weight,
  };
}

/** The shortest passphrase a key may be protected with. */
export const MIN_PASSPHRASE = 12;
/** scrypt as OWASP recommends it (N = 2^17, r = 8, p = 1: 128 MiB, a fraction of a second). */
const SCRYPT = { N: 2 ** 17, r: 8, p: 1, maxmem: 256 * 1024 * 1024 };

interface SealedKey {
  kdf: "scrypt";
  N: number;
  r: number;
  p: number;
  salt: string;
  iv: string;
  tag: string;
  /** The PKCS#8 DER, AES-256-GCM under the key scrypt derives from the passphrase. */
  data: string;
}

function sealKey(der: Buffer, passphrase: string): SealedKey {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", scryptSync(passphrase, salt, 32, SCRYPT), iv);
  const data = Buffer.concat([cipher.update(der), cipher.final()]);
  return {
    kdf: "scrypt",
    N: SCRYPT.N,
    r: SCRYPT.r,
    p: SCRYPT.p,
    salt: salt.toString("base64"),
    iv: iv.toString("base64"),
    tag: cipher.getAuthTag().toString("base64"),
    data: data.toString("base64"),
  };
}

function openKey(sealed: SealedKey, passphrase: string): KeyObject {
  // Parameters from the file, within bounds: a forged file must not make scrypt take all memory.
  if (sealed.kdf !== "scrypt" || sealed.N > 2 ** 20 || sealed.r > 16 || sealed.p > 4) {
    throw new Error("unknown key protection");
  }
  const key = scryptSync(passphrase, Buffer.from(sealed.salt, "base64"), 32, {
    N: sealed.N,
    r: sealed.r,
    p: sealed.p,
    maxmem: SCRYPT.maxmem * 4,
  });
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(sealed.iv, "base64"));
  decipher.setAuthTag(Buffer.from(sealed.tag, "base64"));
  const der = Buffer.concat([decipher.update(Buffer.from(sealed.data, "base64")), decipher.final()]);
  return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
}

/**
 * Writes the private key file with mode 0600. With a passphrase (at least
 * MIN_PASSPHRASE characters) the key is sealed: scrypt with OWASP's
 * parameters, then AES-256-GCM.
 */
export function saveInvestigatorKey(path: string, key: InvestigatorKey, passphrase?: string): void {
  if (passphrase !== undefined && passphrase.length < MIN_PASSPHRASE) {
    throw new DragnetError(
      Codes.PARAMS,
      `a key's passphrase has at least ${MIN_PASSPHRASE} characters (this one has ${passphrase.length})`,
    );
  }
  const der = key.privateKey.export({ type: "pkcs8", format: "der" }) as Buffer;
  const file = {
    kind: KEY_FILE_KIND,
    version: passphrase ? 2 : 1,
    name: key.name,
    keyId: key.keyId,
    publicKey: key.publicKeyRaw.toString("base64"),
    encrypted: Boolean(passphrase),
    ...(passphrase
      ? { sealed: sealKey(der, passphrase) }
      : { privateKey: key.privateKey.export({ type: "pkcs8", format: "pem" }) as string }),
  };
  writeFileAtomic(path, `${JSON.stringify(file, null, 2)}\n`, 0o600);
}

export function loadInvestigatorKey(path: string, passphrase?: string): InvestigatorKey {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot read key file ${path}: ${(err as Error).message}`);
  }
  if (readableByOthers(path)) {
    throw new DragnetError(
      Codes.CONFIG,
      `key file ${path} is readable by others (mode ${(statSync(path).mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
  let file: Record<string, unknown>;
  try {
    file = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new DragnetError(Codes.CONFIG, `key file ${path} is not JSON`);
  }
  const sealed = file.sealed as SealedKey | undefined;
  if (
    file.kind !== KEY_FILE_KIND ||
    typeof file.name !== "string" ||
    (typeof file.privateKey !== "string" && typeof sealed?.data !== "string")
  ) {
    throw new DragnetError(Codes.CONFIG, `${path} is not a Dragnet investigator key file`);
  }
  if (file.encrypted && !passphrase) {
    throw new DragnetError(
      Codes.CONFIG,
      `key file ${path} is passphrase-protected: set DRAGNET_KEY_PASSPHRASE`,
    );
  }
  let privateKey: KeyObject;
  try {
    // Version 2: sealed with scrypt; version 1 files (an encrypted PKCS#8 PEM) are still read.
    privateKey = sealed
      ? openKey(sealed, passphrase!)
      : createPrivateKey(
          file.encrypted
            ? { key: file.privateKey as string, format: "pem", passphrase }
            : (file.privateKey as string),
        );
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot load the private key in ${path}: ${(err as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new DragnetError(Codes.CONFIG, `key file ${path} does not hold an Ed25519 key`);
  }
  const publicKeyRaw = rawPublicKey(createPublicKey(privateKey));
  const keyId = keyIdOf(publicKeyRaw);
  if (file.keyId !== undefined && file.keyId !== keyId) {
    throw new DragnetError(
      Codes.CONFIG,
      `key file ${path} says key id ${String(file.keyId)} but holds ${keyId}`,
    );
  }
  return { name: file.name, keyId, publicKeyRaw, privateKey };
}
