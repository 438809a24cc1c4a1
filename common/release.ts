import { sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { Codes, DragnetError } from "./errors.js";
import { Keyring } from "./keyring.js";
import type { InvestigatorKey, TrustedInvestigator } from "./keys.js";

// An agent release: the executable's bytes and a manifest (version, platform,
// size, SHA-256) signed by a release key. Agents trust release keys from their
// install config only, so neither the coordinator nor NATS can hand them an
// executable of their own.

export const RELEASE_SIGNING_CONTEXT = Buffer.from("dragnet-release-v1\n");
const MANIFEST_KIND = "dragnet-agent-release";
const VERSION_RE = /^\d{1,6}\.\d{1,6}\.\d{1,6}(-[0-9A-Za-z.-]{1,40})?(\+[0-9A-Za-z.-]{1,40})?$/;
const PLATFORM_RE = /^[a-z0-9]{2,16}-[a-z0-9]{2,16}$/;
/** No agent executable is larger; a bigger "release" is refused before anything is stored. */
export const MAX_RELEASE_BYTES = 512 * 1024 * 1024;

export interface ReleaseManifest {
  kind: typeof MANIFEST_KIND;
  version: string;
  platform: string;
  size: number;
  sha256: string;
  publishedAtMs: number;
  publisher: string;
}

/** A manifest as published: its exact text, and a signature over that text. */
export interface SignedRelease {
  manifest: string;
  signature: Uint8Array;
  keyId: string;
}

export function isVersion(v: string): boolean {
  return VERSION_RE.test(v);
}

/** This machine's platform as releases name it (linux-x64, linux-arm64, ...). */
export function currentPlatform(): string {
  return `${process.platform}-${process.arch}`;
}

/** Where a release lives in the releases object store. */
export function releaseObjectName(platform: string, version: string): string {
  return `dragnet-agent/${platform}/${version}`;
}

export function signRelease(
  fields: Omit<ReleaseManifest, "kind" | "publisher">,
  key: InvestigatorKey,
): SignedRelease {
  const manifest = JSON.stringify({ kind: MANIFEST_KIND, ...fields, publisher: key.name });
  parseManifest(manifest);
  return {
    manifest,
    signature: sign(null, Buffer.concat([RELEASE_SIGNING_CONTEXT, Buffer.from(manifest)]), key.privateKey),
    keyId: key.keyId,
  };
}

export function parseManifest(text: string): ReleaseManifest {
  const bad = (why: string) => new DragnetError(Codes.PARAMS, `not a release manifest: ${why}`);
  let m: Partial<ReleaseManifest>;
  try {
    m = JSON.parse(text) as Partial<ReleaseManifest>;
  } catch {
    throw bad("not JSON");
  }
  if (m?.kind !== MANIFEST_KIND) throw bad(`kind is not ${MANIFEST_KIND}`);
  if (typeof m.version !== "string" || !isVersion(m.version)) throw bad("bad version");
  if (typeof m.platform !== "string" || !PLATFORM_RE.test(m.platform)) throw bad("bad platform");
  if (!Number.isSafeInteger(m.size) || (m.size as number) <= 0 || (m.size as number) > MAX_RELEASE_BYTES)
    throw bad("bad size");
  if (typeof m.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(m.sha256)) throw bad("bad sha256");
  if (!Number.isSafeInteger(m.publishedAtMs)) throw bad("bad publishedAtMs");
  if (typeof m.publisher !== "string") throw bad("bad publisher");
  return m as ReleaseManifest;
}

/** The manifest, if a trusted release key signed exactly this text; refuses otherwise, saying why. */
export function verifyRelease(
  release: SignedRelease,
  trusted: Keyring,
): { manifest: ReleaseManifest; signer: TrustedInvestigator } {
  const signer = trusted.get(release.keyId);
  if (!signer) {
    throw new DragnetError(
      Codes.SIG_UNKNOWN_KEY,
      `the release is signed by key ${release.keyId}, which is not one of this agent's release keys`,
    );
  }
  const message = Buffer.concat([RELEASE_SIGNING_CONTEXT, Buffer.from(release.manifest)]);
  if (!verify(null, message, signer.publicKey, release.signature)) {
    throw new DragnetError(Codes.SIG_INVALID, `the release's signature by ${signer.name} does not verify`);
  }
  return { manifest: parseManifest(release.manifest), signer };
}

/** Release keys from a file: {"releaseKeys": [{name, publicKey, keyId?}]} (the keyring's entry format). */
export function loadReleaseKeys(path: string): Keyring {
  let json: { releaseKeys?: unknown };
  try {
    json = JSON.parse(readFileSync(path, "utf8")) as { releaseKeys?: unknown };
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot read release keys ${path}: ${(err as Error).message}`);
  }
  if (!Array.isArray(json?.releaseKeys)) {
    throw new DragnetError(Codes.CONFIG, `${path}: expected {"releaseKeys": [...]}`);
  }
  return Keyring.fromJson({ investigators: json.releaseKeys }, path);
}
