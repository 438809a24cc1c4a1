import { existsSync, readFileSync, rmSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fmtCreds } from "@nats-io/jwt";
import { createUser, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { decodeEnrollmentToken, type EnrollmentReply, type EnrollmentRequest } from "../common/enrollment.js";
import { Codes, DEFAULT_PREFIX, DragnetError, VERSION, writeFileAtomic } from "../common/mod.js";
import { enrollInboxPrefix, enrollSubject } from "../common/nats-authority.js";
import { natsConnectOptions, parseNatsSettings } from "../common/nats-link.js";
import { loadOrCreateAgentId } from "./identity.js";

// `dragnet-agent enroll`: joins the fleet with a token an admin made on the
// coordinator. The agent makes its own NATS key pair (the seed never leaves
// this host), sends the public key with its id, and receives a user JWT
// limited to its own subjects and the tags the token assigns. It writes the
// credentials beside its config and points the config at them and at the
// coordinator's NATS. The keyring and ACL stay as the install config gave them.

export interface EnrollOptions {
  config: string;
  token: string;
  natsUrls: string[];
  timeoutMs?: number;
}

export interface Enrolled {
  agentId: string;
  tags: Record<string, string>;
  creds: string;
  config: string;
}

const CREDS_FILE = "agent.creds";

/** Kept from before the request until the credentials hold it: a lost answer is asked for again with the same key. */
const PENDING_SEED = "enroll.seed";

/**
 * The agent's key pair: the one of an enrolment whose answer was lost, else the one in its
 * credentials (enrolling again keeps the key), else a new one, saved before it is sent.
 */
function agentKeyPair(stateDir: string, credsPath: string | undefined): KeyPair {
  const pending = join(stateDir, PENDING_SEED);
  let seed = existsSync(pending) ? readFileSync(pending, "utf8").trim() : undefined;
  if (!seed && credsPath && existsSync(credsPath)) {
    seed = /-----BEGIN USER NKEY SEED-----\s*(SU[A-Z2-7]+)\s*/.exec(readFileSync(credsPath, "utf8"))?.[1];
  }
  if (seed) return fromSeed(Buffer.from(seed));
  const key = createUser();
  writeFileAtomic(pending, Buffer.from(key.getSeed()).toString("utf8"), 0o600);
  return key;
}

export async function enroll(opts: EnrollOptions): Promise<Enrolled> {
  const token = decodeEnrollmentToken(opts.token);
  const configPath = resolve(opts.config);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot read config ${configPath}: ${(err as Error).message}`);
  }
  const base = dirname(configPath);
  const nats = parseNatsSettings(config.nats, base, opts.natsUrls);
  if (typeof config.stateDir !== "string")
    throw new DragnetError(Codes.CONFIG, `${configPath} names no stateDir`);
  const stateDir = isAbsolute(config.stateDir) ? config.stateDir : resolve(base, config.stateDir);
  const prefix = typeof config.subjectPrefix === "string" ? config.subjectPrefix : DEFAULT_PREFIX;
  const agentId = loadOrCreateAgentId(stateDir);
  const key = agentKeyPair(stateDir, nats.creds);

  const nc = await connect({
    // The fleet's servers and TLS as the agent will use them; the token's credentials, not its own (yet).
    ...natsConnectOptions({ ...nats, creds: undefined }),
    authenticator: credsAuthenticator(new TextEncoder().encode(token.creds)),
    inboxPrefix: enrollInboxPrefix(token.id),
    timeout: opts.timeoutMs ?? 15_000,
    name: `dragnet-agent enroll ${agentId}`,
  }).catch((err: Error) => {
    throw new DragnetError(
      Codes.UNAVAILABLE,
      `cannot reach NATS at ${nats.servers.join(", ")} with the token's credentials: ${err.message} (an expired token is refused here by the server)`,
    );
  });
  let reply: EnrollmentReply;
  try {
    const request: EnrollmentRequest = {
      tokenId: token.id,
      secret: token.secret,
      agentId,
      publicKey: key.getPublicKey(),
      hostname: typeof config.hostname === "string" ? config.hostname : osHostname(),
      version: VERSION,
    };
    const msg = await nc
      .request(enrollSubject(prefix), JSON.stringify(request), { timeout: opts.timeoutMs ?? 15_000 })
      .catch((err: Error) => {
        throw new DragnetError(Codes.UNAVAILABLE, `no coordinator answered the enrolment: ${err.message}`);
      });
    reply = JSON.parse(msg.string()) as EnrollmentReply;
  } finally {
    await nc.close();
  }
  if (!reply.ok) throw new DragnetError(reply.code as never, `enrolment refused: ${reply.message}`);
  if (reply.agentId !== agentId)
    throw new DragnetError(Codes.DECODE, "the coordinator answered for another agent");

  const credsPath = nats.creds ?? join(base, CREDS_FILE);
  writeFileAtomic(credsPath, Buffer.from(fmtCreds(reply.jwt, key)).toString("utf8"), 0o600);
  const updated = {
    ...config,
    nats: { ...((config.nats ?? {}) as object), servers: nats.servers, creds: credsPath },
    tags: { ...((config.tags ?? {}) as object), ...reply.tags },
  };
  writeFileAtomic(configPath, `${JSON.stringify(updated, null, 2)}\n`, 0o600);
  rmSync(join(stateDir, PENDING_SEED), { force: true });
  return { agentId, tags: updated.tags as Record<string, string>, creds: credsPath, config: configPath };
}
