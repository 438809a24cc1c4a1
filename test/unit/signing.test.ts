import { createHash, createPublicKey, sign } from "node:crypto";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  Codes,
  checkValidityWindow,
  coSign,
  DragnetError,
  generateInvestigatorKey,
  Keyring,
  keyIdOf,
  loadInvestigatorKey,
  publicEntryOf,
  saveInvestigatorKey,
  signAction,
  verifySignedAction,
} from "../../common/mod.js";
import { type ActionBody, FileSearch, type SignedAction } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

const alice = generateInvestigatorKey("alice");
const bob = generateInvestigatorKey("bob");
const mallory = generateInvestigatorKey("mallory");
const ring = Keyring.fromJson({ investigators: [publicEntryOf(alice), publicEntryOf(bob)] });

function body(overrides: Partial<ActionBody> = {}): ActionBody {
  const now = Date.now();
  return {
    id: "01m8000000000000000000000a",
    schedule: undefined,
    name: "test",
    target: "all",
    operations: [
      {
        module: {
          $case: "file",
          value: {
            searches: [FileSearch.fromPartial({ label: "s1", paths: ["/etc"], names: ["^passwd$"] })],
          },
        },
      },
    ],
    validFromMs: now - 1000,
    expiresAtMs: now + 60_000,
    timeoutMs: 10_000,
    incidentId: "",
    description: "",
    createdAtMs: now,
    ...overrides,
  };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof DragnetError) return err.code;
    throw err;
  }
  return undefined;
}

describe("investigator keys", () => {
  it("key id is the first 16 hex of SHA-256 of the raw public key (from the SPKI DER, independently)", () => {
    const der = createPublicKey(alice.privateKey).export({ format: "der", type: "spki" });
    const raw = der.subarray(der.length - 32);
    expect(raw.equals(alice.publicKeyRaw)).toBe(true);
    expect(alice.keyId).toBe(createHash("sha256").update(raw).digest("hex").slice(0, 16));
    expect(keyIdOf(raw)).toMatch(/^[0-9a-f]{16}$/);
  });

  it("saves private keys with mode 0600 and refuses files readable by others", () => {
    const dir = tempDir();
    const file = join(dir, "alice.key");
    saveInvestigatorKey(file, alice);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(loadInvestigatorKey(file).keyId).toBe(alice.keyId);
    chmodSync(file, 0o644);
    expect(() => loadInvestigatorKey(file)).toThrow(/readable by others/);
  });

  it("protects a key with a passphrase of 12 characters or more, sealed with scrypt (OWASP's parameters)", () => {
    const file = join(tempDir(), "bob.key");
    expect(() => saveInvestigatorKey(file, bob, "correct")).toThrow(
      /at least 12 characters \(this one has 7\)/,
    );
    saveInvestigatorKey(file, bob, "correct horse battery");
    const stored = JSON.parse(readFileSync(file, "utf8"));
    expect(stored.sealed).toMatchObject({ kdf: "scrypt", N: 131072, r: 8, p: 1 });
    expect(JSON.stringify(stored)).not.toContain("PRIVATE KEY");
    expect(() => loadInvestigatorKey(file)).toThrow(/passphrase-protected/);
    expect(() => loadInvestigatorKey(file, "correct horse battery!")).toThrow(/cannot load the private key/);
    expect(loadInvestigatorKey(file, "correct horse battery").keyId).toBe(bob.keyId);
  });

  it("refuses a keyring entry whose key id does not match its key", () => {
    const entry = { ...publicEntryOf(alice), keyId: bob.keyId };
    expect(() => Keyring.fromJson({ investigators: [entry] })).toThrow(/does not match/);
    expect(() => Keyring.fromJson({ investigators: [{ name: "x", publicKey: "AAAA" }] })).toThrow(/32 bytes/);
    expect(() => Keyring.fromJson({ investigators: [publicEntryOf(alice), publicEntryOf(alice)] })).toThrow(
      /twice/,
    );
  });
});

describe("signed actions", () => {
  it("verifies a signed action and names its signer", () => {
    const v = verifySignedAction(signAction(body(), alice), ring);
    expect(v.signers.map((s) => s.name)).toEqual(["alice"]);
    expect(v.weight).toBe(1);
    expect(v.body.name).toBe("test");
  });

  it("fails when any single bit of the body is flipped", () => {
    const signed = signAction(body(), alice);
    for (let i = 0; i < signed.body.length * 8; i++) {
      const tampered = Buffer.from(signed.body);
      tampered[i >> 3]! ^= 1 << (i & 7);
      const c = code(() => verifySignedAction({ ...signed, body: tampered }, ring));
      expect(c, `bit ${i}`).toBe(Codes.SIG_INVALID);
    }
  });

  it("fails when any single bit of the signature is flipped", () => {
    const signed = signAction(body(), alice);
    const sig = signed.signatures[0]!.signature;
    for (let i = 0; i < sig.length * 8; i++) {
      const tampered = Buffer.from(sig);
      tampered[i >> 3]! ^= 1 << (i & 7);
      const c = code(() =>
        verifySignedAction(
          { body: signed.body, signatures: [{ keyId: alice.keyId, signature: tampered }] },
          ring,
        ),
      );
      expect(c, `bit ${i}`).toBe(Codes.SIG_INVALID);
    }
  });

  it("refuses unsigned actions and unknown keys", () => {
    const signed = signAction(body(), alice);
    expect(code(() => verifySignedAction({ body: signed.body, signatures: [] }, ring))).toBe(Codes.UNSIGNED);
    expect(code(() => verifySignedAction(signAction(body(), mallory), ring))).toBe(Codes.SIG_UNKNOWN_KEY);
    expect(code(() => verifySignedAction(undefined, ring))).toBe(Codes.ACTION_INVALID);
  });

  it("binds signatures to the action context: a bare signature over the body does not verify", () => {
    const signed = signAction(body(), alice);
    const bare = sign(null, signed.body, alice.privateKey);
    expect(
      code(() =>
        verifySignedAction(
          { body: signed.body, signatures: [{ keyId: alice.keyId, signature: bare }] },
          ring,
        ),
      ),
    ).toBe(Codes.SIG_INVALID);
  });

  it("counts a key once however many times it signed, and co-signatures add weight", () => {
    const signed = signAction(body(), alice);
    const twice: SignedAction = {
      body: signed.body,
      signatures: [signed.signatures[0]!, signed.signatures[0]!],
    };
    expect(verifySignedAction(twice, ring).weight).toBe(1);
    expect(verifySignedAction(twice, ring).repeated).toEqual(["alice"]);
    // Many copies of one signature are refused before they are verified.
    const many: SignedAction = { body: signed.body, signatures: Array(17).fill(signed.signatures[0]!) };
    expect(() => verifySignedAction(many, ring)).toThrow(/carries 17 signatures; at most 16/);
    const both = coSign(signed, bob);
    expect(coSign(both, bob).signatures).toHaveLength(2);
    const v = verifySignedAction(both, ring);
    expect(v.weight).toBe(2);
    expect(v.signers.map((s) => s.name)).toEqual(["alice", "bob"]);
  });

  it("checks the validity window", () => {
    const now = Date.now();
    expect(
      code(() =>
        checkValidityWindow(body({ validFromMs: now + 3_600_000, expiresAtMs: now + 7_200_000 }), now),
      ),
    ).toBe(Codes.NOT_YET_VALID);
    expect(
      code(() => checkValidityWindow(body({ validFromMs: now - 7_200_000, expiresAtMs: now - 1 }), now)),
    ).toBe(Codes.EXPIRED);
    expect(code(() => checkValidityWindow(body({ validFromMs: now, expiresAtMs: now - 1 }), now))).toBe(
      Codes.ACTION_INVALID,
    );
    expect(code(() => checkValidityWindow(body(), now))).toBeUndefined();
    // Within the clock-skew tolerance an action that starts slightly in the future is accepted.
    expect(
      code(() =>
        checkValidityWindow(body({ validFromMs: now + 5000, expiresAtMs: now + 60_000 }), now, 10_000),
      ),
    ).toBeUndefined();
  });
});
