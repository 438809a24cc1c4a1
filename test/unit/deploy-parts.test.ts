import { createPublicKey } from "node:crypto";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createAccount } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { loadAgentConfig } from "../../agent/config.js";
import {
  decodeEnrollmentToken,
  encodeEnrollmentToken,
  parseEnrollmentRequest,
} from "../../common/enrollment.js";
import {
  Codes,
  DEFAULT_ROLES,
  DragnetError,
  generateInvestigatorKey,
  Keyring,
  newId,
} from "../../common/mod.js";
import { signRelease, verifyRelease } from "../../common/release.js";
import { parseCoordinatorConfig } from "../../coordinator/config.js";
import { tempDir } from "../helpers/fleet.js";

// The small parts deployment rests on: enrolment tokens and requests as they
// come off the wire, release signatures, and the settings that turn them on.

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return DragnetError.is(err) ? `${err.code}: ${err.message}` : String(err);
  }
  return "no error";
};

/** The least a coordinator's config needs (plaintext gRPC: these tests read settings, they serve nothing). */
const coordinatorBase = () => ({
  nats: { servers: ["nats://x:1"] },
  grpc: { listen: "127.0.0.1:1", insecure: true },
  database: "db",
  keyring: "k",
  agentAccount: createAccount().getPublicKey(),
});

describe("enrolment tokens and requests", () => {
  const parts = { id: newId(), secret: "s".repeat(43), creds: "-----BEGIN NATS USER JWT-----\nx\n" };

  it("a token round-trips, and a damaged or foreign one is refused saying so", () => {
    expect(decodeEnrollmentToken(`  ${encodeEnrollmentToken(parts)}\n`)).toEqual(parts);
    expect(codeOf(() => decodeEnrollmentToken("hello"))).toContain(
      "it does not start with DRAGNET-ENROLL-1.",
    );
    expect(codeOf(() => decodeEnrollmentToken(encodeEnrollmentToken(parts).slice(0, 40)))).toContain(
      "cut or damaged",
    );
    expect(codeOf(() => decodeEnrollmentToken(encodeEnrollmentToken({ ...parts, id: "x" })))).toContain(
      "no token id",
    );
  });

  it("a request is checked field by field", () => {
    const good = {
      tokenId: parts.id,
      secret: parts.secret,
      agentId: "agent-1",
      publicKey: `U${"A".repeat(55)}`,
      hostname: "web-1",
      version: "0.1.0",
    };
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o));
    expect(parseEnrollmentRequest(enc(good))).toEqual(good);
    expect(codeOf(() => parseEnrollmentRequest(enc({ ...good, publicKey: "SUABC" })))).toBe(
      `${Codes.DECODE}: not an enrolment request: bad publicKey`,
    );
    expect(codeOf(() => parseEnrollmentRequest(enc({ ...good, agentId: "a.b" })))).toContain("bad agentId");
    expect(codeOf(() => parseEnrollmentRequest(Buffer.from("{")))).toContain("not JSON");
    expect(codeOf(() => parseEnrollmentRequest(Buffer.alloc(9000, 32)))).toContain("over 8192 bytes");
  });
});

describe("release signatures", () => {
  const key = generateInvestigatorKey("release");
  const trusted = new Keyring([
    { ...key, publicKey: createPublicKey(key.privateKey), weight: 1, roles: new Set(DEFAULT_ROLES) },
  ]);
  const fields = {
    version: "1.2.3",
    platform: "linux-x64",
    size: 10,
    sha256: "a".repeat(64),
    publishedAtMs: 1,
  };

  it("verifies what a trusted key signed, and nothing else", () => {
    const signed = signRelease(fields, key);
    expect(verifyRelease(signed, trusted).manifest).toMatchObject({ ...fields, publisher: "release" });
    const edited = { ...signed, manifest: signed.manifest.replace("1.2.3", "1.2.4") };
    expect(codeOf(() => verifyRelease(edited, trusted))).toBe(
      `${Codes.SIG_INVALID}: the release's signature by release does not verify`,
    );
    const other = signRelease(fields, generateInvestigatorKey("mallory"));
    expect(codeOf(() => verifyRelease(other, trusted))).toContain("not one of this agent's release keys");
    expect(codeOf(() => signRelease({ ...fields, version: "latest" }, key))).toContain("bad version");
  });
});

describe("settings", () => {
  it("the agent's commandMemoryMb and releaseKeys", () => {
    const dir = tempDir();
    const config = join(dir, "agent.json");
    const write = (o: object) =>
      writeFileSync(
        config,
        JSON.stringify({ nats: { servers: ["nats://x:1"] }, keyring: "k.json", stateDir: "s", ...o }),
        { mode: 0o600 },
      );
    write({ releaseKeys: "release-keys.json" });
    const c = loadAgentConfig({ config });
    expect([c.commandMemoryMb, c.releaseKeys]).toEqual([256, join(dir, "release-keys.json")]);
    write({ commandMemoryMb: 8 });
    expect(codeOf(() => loadAgentConfig({ config }))).toBe(
      `${Codes.CONFIG}: commandMemoryMb must be 16 to 16384`,
    );
  });

  it("the coordinator's enrollment.accountSeed: an account seed, readable by its owner only", () => {
    const dir = tempDir();
    const base = coordinatorBase();
    const seedFile = join(dir, "account.seed");
    writeFileSync(seedFile, Buffer.from(createAccount().getSeed()), { mode: 0o600 });
    const cfg = parseCoordinatorConfig({ ...base, enrollment: { accountSeed: "account.seed" } }, dir);
    expect(cfg.enrollmentAccountSeed).toMatch(/^SA/);
    chmodSync(seedFile, 0o644);
    expect(
      codeOf(() => parseCoordinatorConfig({ ...base, enrollment: { accountSeed: "account.seed" } }, dir)),
    ).toContain("must not be readable by others");
    writeFileSync(seedFile, "SUAAAA", { mode: 0o600 });
    chmodSync(seedFile, 0o600);
    expect(
      codeOf(() => parseCoordinatorConfig({ ...base, enrollment: { accountSeed: "account.seed" } }, dir)),
    ).toContain("does not hold a NATS account seed");
    expect(parseCoordinatorConfig(base, dir).enrollmentAccountSeed).toBeUndefined();
  });

  it("the coordinator's store: a PostgreSQL URL without a password, the password in a file only its owner reads", () => {
    const dir = tempDir();
    const base = coordinatorBase();
    writeFileSync(join(dir, "pg.password"), "secret\n", { mode: 0o600 });
    const url = "postgres://dragnet@db.example:5432/dragnet";
    const cfg = parseCoordinatorConfig(
      {
        ...base,
        id: "c1",
        leaseMs: 4000,
        store: { postgres: url, passwordFile: "pg.password", tls: { ca: "ca.pem" } },
      },
      dir,
    );
    expect(cfg.postgres).toEqual({
      url,
      passwordFile: join(dir, "pg.password"),
      tls: { ca: join(dir, "ca.pem"), cert: undefined, key: undefined, servername: undefined },
      poolSize: undefined,
    });
    expect([cfg.id, cfg.leaseMs, cfg.evidenceStore]).toEqual(["c1", 4000, "jetstream"]);
    expect(parseCoordinatorConfig(base, dir)).toMatchObject({
      postgres: undefined,
      leaseMs: 10_000,
      evidenceStore: "disk",
    });
    expect(parseCoordinatorConfig({ ...base, evidenceStore: "jetstream" }, dir).evidenceStore).toBe(
      "jetstream",
    );
    const refusal = (store: unknown, extra: Record<string, unknown> = {}) =>
      codeOf(() => parseCoordinatorConfig({ ...base, ...extra, store }, dir));
    expect(refusal({ postgres: "postgres://dragnet:hunter2@db/dragnet" })).toContain("not in the URL");
    expect(refusal({ postgres: "mysql://db/x" })).toContain("store.postgres must be a postgres://");
    expect(refusal({ postgres: url, pool: 3 })).toContain("unknown setting pool");
    expect(refusal({ postgres: url, passwordFile: "missing" })).toContain("cannot read store.passwordFile");
    chmodSync(join(dir, "pg.password"), 0o644);
    expect(refusal({ postgres: url, passwordFile: "pg.password" })).toContain(
      "must not be readable by others",
    );
    expect(refusal({ postgres: url }, { leaseMs: 200 })).toContain("leaseMs must be at least 1000");
    // Evidence one coordinator keeps on its disk is out of the others' reach.
    expect(refusal({ postgres: url }, { evidenceStore: "disk" })).toContain('use "jetstream"');
    expect(refusal(undefined, { evidenceStore: "s3" })).toContain(
      'evidenceStore must be "disk" or "jetstream"',
    );
  });
});
