import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { fromSeed } from "@nats-io/nkeys";
import { jwtIssuer, parseCreds, publicNkeyBytes } from "../common/agent-identity.js";
import { readableByOthers } from "../common/files.js";
import {
  Codes,
  DEFAULT_COORDINATOR,
  DEFAULT_PREFIX,
  DragnetError,
  isSubjectToken,
  type Level,
  parseDuration,
} from "../common/mod.js";
import { type NatsSettings, parseNatsSettings } from "../common/nats-link.js";
import { type ExportSinkConfig, parseExports } from "./exports/mod.js";
import type { PostgresOptions } from "./store/pg-connect.js";

export interface CoordinatorConfig {
  /** This coordinator's own name: its audit chain, its lease; several coordinators need different ones. */
  id: string;
  /** Several coordinators on one PostgreSQL store: how long a silent one keeps its open actions. */
  leaseMs: number;
  nats: NatsSettings;
  subjectPrefix: string;
  grpc: {
    /** host:port to listen on. */
    listen: string;
    /** TLS certificate and key (PEM files). Required unless `insecure`. */
    cert?: string;
    key?: string;
    /** Plaintext gRPC: an explicit opt-out for debugging, never a fallback. */
    insecure: boolean;
  };
  /**
   * SQLite database file, the default store; its directory holds the coordinator's
   * local files (evidence, journal key, release copies) whichever store is used.
   */
  database: string;
  /** PostgreSQL instead of SQLite (`store.postgres`): several coordinators share one database. */
  postgres?: PostgresOptions;
  /** Where collected files are assembled, and kept on "disk" (default: an "evidence" directory beside the database). */
  evidenceDir: string;
  /**
   * Where collected files are kept: "disk" (evidenceDir, the default with SQLite) or "jetstream"
   * (the object store bucket dragnet-evidence, the default with PostgreSQL: any coordinator serves them).
   */
  evidenceStore: "disk" | "jetstream";
  /** The key that seals notebook pages (made on first start; default: journal.key beside the database). */
  journalKey: string;
  /** Webhooks by role for `incident notify` (HTTP POST of a JSON summary). */
  notify: Record<string, string>;
  /** The fleet NATS account's seed, read from `enrollment.accountSeed` (a file): without it, no enrolment. */
  enrollmentAccountSeed?: string;
  /** How long the NATS credentials enrolment issues are good for (`enrollment.credentialsExpire`, default 30d); agents renew them. */
  enrollmentCredentialsMs: number;
  /**
   * The NATS account (public nkey) whose user JWTs identify agents: what an agent
   * sends is trusted only with such a JWT naming it and its key's signature.
   * `agentAccount`, or the account whose seed enrols agents, or the issuer of
   * the coordinator's own NATS credentials.
   */
  agentAccount: string;
  /** Investigators whose signatures the coordinator accepts on submit. */
  keyring: string;
  registry: {
    /** An agent is online while its last heartbeat is younger than this (default: 3 of its intervals). */
    onlineWithinMs?: number;
    /** After this long without a heartbeat an agent is offline (idle in between). */
    offlineAfterMs: number;
  };
  /** The JetStream stream results travel on. */
  results: {
    /** Copies in a NATS cluster: 1 for one server, 3 for a 3-node cluster. */
    replicas: number;
    /** How long this coordinator has to store a result before the stream hands it out again. */
    ackWaitMs: number;
  };
  /** How long to wait for a result past an acknowledged command's timeout before calling it timed out. */
  resultGraceMs: number;
  /** Export sinks (syslog, HTTP, file): each reads the store from its own cursor (coordinator/exports). */
  exports: ExportSinkConfig[];
  logLevel: Level;
}

/** `store: { postgres: "postgres://user@host/db", passwordFile, tls: { ca, cert, key, servername }, poolSize }`. */
function postgresOf(v: unknown, file: (p: unknown, what: string) => string): PostgresOptions | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    fail("store must be an object: { postgres: URL }");
  const o = v as Record<string, unknown>;
  const unknownKeys = Object.keys(o).filter(
    (k) => !["postgres", "passwordFile", "tls", "poolSize"].includes(k),
  );
  if (unknownKeys.length) fail(`store: unknown setting ${unknownKeys.join(", ")}`);
  if (typeof o.postgres !== "string" || !/^postgres(ql)?:\/\/\S+$/.test(o.postgres))
    fail("store.postgres must be a postgres://user@host:port/database URL");
  const url = new URL(o.postgres);
  if (url.password)
    fail("store.postgres: give the password in store.passwordFile (or PGPASSFILE), not in the URL");
  if (
    o.poolSize !== undefined &&
    (!Number.isInteger(o.poolSize) || (o.poolSize as number) < 2 || (o.poolSize as number) > 100)
  )
    fail("store.poolSize must be an integer from 2 to 100");
  let tls: PostgresOptions["tls"];
  if (o.tls !== undefined) {
    if (typeof o.tls !== "object" || o.tls === null)
      fail("store.tls must be an object: { ca, cert, key, servername }");
    const t = o.tls as Record<string, unknown>;
    tls = {
      ca: t.ca === undefined ? undefined : file(t.ca, "store.tls.ca"),
      cert: t.cert === undefined ? undefined : file(t.cert, "store.tls.cert"),
      key: t.key === undefined ? undefined : file(t.key, "store.tls.key"),
      servername: typeof t.servername === "string" ? t.servername : undefined,
    };
  }
  const passwordFile = o.passwordFile === undefined ? undefined : file(o.passwordFile, "store.passwordFile");
  if (passwordFile) {
    let open: boolean;
    try {
      open = readableByOthers(passwordFile);
    } catch (err) {
      fail(`cannot read store.passwordFile ${passwordFile}: ${(err as Error).message}`);
    }
    if (open) fail(`store.passwordFile ${passwordFile} must not be readable by others (chmod 600)`);
  }
  return { url: o.postgres, passwordFile, tls, poolSize: o.poolSize as number | undefined };
}

function replicasOf(v: unknown): number {
  if (v === undefined) return 1;
  if (v !== 1 && v !== 3 && v !== 5) fail("results.replicas must be 1, 3 or 5");
  return v;
}

function notifyOf(v: unknown): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) fail("notify must map roles to webhook URLs");
  const out: Record<string, string> = {};
  for (const [role, url] of Object.entries(v)) {
    if (typeof url !== "string" || !/^https?:\/\/\S+$/.test(url))
      fail(`notify.${role} must be an http(s) URL`);
    out[role] = url;
  }
  return out;
}

function accountSeedOf(v: unknown, file: (p: unknown, what: string) => string): string | undefined {
  if (v === undefined) return undefined;
  const path = file((v as { accountSeed?: unknown } | null)?.accountSeed, "enrollment.accountSeed");
  let seed: string;
  try {
    seed = readFileSync(path, "utf8").trim();
  } catch (err) {
    fail(`cannot read enrollment.accountSeed ${path}: ${(err as Error).message}`);
  }
  if (!/^SA[A-Z2-7]{56}$/.test(seed))
    fail(`enrollment.accountSeed ${path} does not hold a NATS account seed`);
  if (readableByOthers(path))
    fail(`enrollment.accountSeed ${path} must not be readable by others (chmod 600)`);
  return seed;
}

function agentAccountOf(v: unknown, creds: string | undefined, enrollmentSeed: string | undefined): string {
  if (enrollmentSeed && v === undefined) return fromSeed(Buffer.from(enrollmentSeed)).getPublicKey();
  if (v !== undefined) {
    if (typeof v !== "string" || !publicNkeyBytes(v, "account"))
      fail("agentAccount must be a NATS account's public nkey (A…)");
    return v;
  }
  if (!creds) {
    fail(
      "the coordinator authenticates agents by their NATS credentials: give nats.creds (issued by the fleet account) or agentAccount",
    );
  }
  try {
    return jwtIssuer(parseCreds(readFileSync(creds, "utf8")).jwt);
  } catch (err) {
    fail(`nats.creds ${creds}: ${(err as Error).message}`);
  }
}

function credentialsLifetimeOf(v: unknown): number {
  const text = (v as { credentialsExpire?: unknown } | undefined)?.credentialsExpire ?? "30d";
  let ms = Number.NaN;
  try {
    ms = typeof text === "string" ? parseDuration(text) : Number.NaN;
  } catch {
    // refused below
  }
  if (!(ms >= 10_000 && ms <= 366 * 86_400_000)) {
    fail("enrollment.credentialsExpire is a duration from 10s to 366d (default 30d)");
  }
  return ms;
}

function fail(message: string): never {
  throw new DragnetError(Codes.CONFIG, message);
}

export function loadCoordinatorConfig(path: string): CoordinatorConfig {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    fail(`cannot read coordinator config ${path}: ${(err as Error).message}`);
  }
  return parseCoordinatorConfig(json, resolve(path, ".."));
}

export function parseCoordinatorConfig(json: Record<string, unknown>, baseDir: string): CoordinatorConfig {
  const file = (p: unknown, what: string): string => {
    if (typeof p !== "string" || !p) fail(`${what} must be a file path`);
    return isAbsolute(p) ? p : resolve(baseDir, p);
  };
  const nats = parseNatsSettings(json.nats, baseDir);
  const grpc = (json.grpc ?? {}) as Record<string, unknown>;
  if (typeof grpc.listen !== "string" || !/^[^\s]+:\d+$/.test(grpc.listen))
    fail("grpc.listen must be host:port");
  const insecure = grpc.insecure === true;
  if (!insecure && (grpc.cert === undefined || grpc.key === undefined)) {
    fail("grpc.cert and grpc.key are required (plaintext gRPC needs grpc.insecure: true)");
  }
  const registry = (json.registry ?? {}) as Record<string, unknown>;
  const ms = (v: unknown, what: string, dflt: number | undefined) => {
    if (v === undefined) return dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
      fail(`${what} must be a positive integer (ms)`);
    return v;
  };
  const logLevel = (json.logLevel ?? "info") as Level;
  if (!["debug", "info", "warn", "error"].includes(logLevel))
    fail("logLevel must be debug, info, warn or error");
  const id = json.id ?? DEFAULT_COORDINATOR;
  const enrollmentAccountSeed = accountSeedOf(json.enrollment, file);
  if (typeof id !== "string" || !isSubjectToken(id)) fail("id must be 1 to 64 letters, digits, '_' or '-'");
  const postgres = postgresOf(json.store, file);
  const leaseMs = ms(json.leaseMs, "leaseMs", 10_000)!;
  const evidenceStore = json.evidenceStore ?? (postgres ? "jetstream" : "disk");
  if (evidenceStore !== "disk" && evidenceStore !== "jetstream")
    fail('evidenceStore must be "disk" or "jetstream"');
  if (postgres && evidenceStore === "disk")
    fail(
      'evidenceStore "disk" with store.postgres: evidence one coordinator received would be out of the others\' reach; use "jetstream"',
    );
  if (leaseMs < 1000) fail("leaseMs must be at least 1000 (a lease renewed 4 times in it)");
  return {
    id,
    leaseMs,
    nats,
    subjectPrefix: typeof json.subjectPrefix === "string" ? json.subjectPrefix : DEFAULT_PREFIX,
    grpc: {
      listen: grpc.listen,
      cert: insecure ? undefined : file(grpc.cert, "grpc.cert"),
      key: insecure ? undefined : file(grpc.key, "grpc.key"),
      insecure,
    },
    database: file(json.database, "database"),
    postgres,
    evidenceDir:
      json.evidenceDir === undefined
        ? resolve(file(json.database, "database"), "..", "evidence")
        : file(json.evidenceDir, "evidenceDir"),
    evidenceStore,
    notify: notifyOf(json.notify),
    enrollmentAccountSeed,
    enrollmentCredentialsMs: credentialsLifetimeOf(json.enrollment),
    agentAccount: agentAccountOf(json.agentAccount, nats.creds, enrollmentAccountSeed),
    journalKey:
      json.journalKey === undefined
        ? resolve(file(json.database, "database"), "..", "journal.key")
        : file(json.journalKey, "journalKey"),
    keyring: file(json.keyring, "keyring"),
    registry: {
      onlineWithinMs: ms(registry.onlineWithinMs, "registry.onlineWithinMs", undefined),
      offlineAfterMs: ms(registry.offlineAfterMs, "registry.offlineAfterMs", 300_000)!,
    },
    resultGraceMs: ms(json.resultGraceMs, "resultGraceMs", 15_000)!,
    results: {
      replicas: replicasOf((json.results as Record<string, unknown> | undefined)?.replicas),
      ackWaitMs: ms(
        (json.results as Record<string, unknown> | undefined)?.ackWaitMs,
        "results.ackWaitMs",
        10_000,
      )!,
    },
    exports: parseExports(json.exports, baseDir),
    logLevel,
  };
}
