import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Msg } from "@nats-io/transport-node";
import { type EnrollmentReply, encodeEnrollmentToken, parseEnrollmentRequest } from "../common/enrollment.js";
import { Codes, DragnetError, isSubjectToken, type Logger, newId, problemOf } from "../common/mod.js";
import {
  agentPermissions,
  enrollInboxPrefix,
  enrollPermissions,
  userCreds,
  userJwt,
} from "../common/nats-authority.js";
import { tagProblem } from "../common/tags.js";
import type { EnrollmentToken } from "../proto/api.js";
import type { AuditFields } from "./audit-log.js";
import type { Store, StoredEnrollmentToken } from "./store/store.js";

// Enrolment: an admin makes a token (tags, uses, expiry); an agent holding it
// asks on <prefix>.enroll with its id and the public half of a NATS key pair
// it made itself, and gets back a user JWT for that key with the agent
// permissions, and the token's tags. The coordinator signs with the fleet
// account's seed (config `enrollment.accountSeed`) and never sees the agent's
// seed. Who may command agents (keyring, ACL) is not part of it: that comes
// with the install config, so a coordinator cannot change it.

export const DEFAULT_TOKEN_LIFETIME_MS = 24 * 3_600_000;
const MAX_TOKEN_LIFETIME_MS = 90 * 86_400_000;
const MAX_TOKEN_USES = 100_000;
/** How long past a token's expiry its NATS credentials still connect, so a late agent hears why it is refused. */
const CREDS_GRACE_MS = 10 * 60_000;

export interface EnrollmentDeskDeps {
  store: Store;
  /** The fleet account's seed; without it this coordinator does not enrol. */
  accountSeed?: string;
  /** How long issued credentials are good for (agents renew them before). */
  credentialsMs: number;
  /** The agent that signed a renewal request and its public nkey (throws when not authentic, or revoked). */
  authenticate: (msg: Msg) => { agentId: string; userKey: string };
  prefix: string;
  /** An agent this coordinator knows already (from heartbeats), enrolled or not. */
  knownAgent: (agentId: string) => boolean;
  audit: (actor: string, event: string, fields: AuditFields) => void;
  auditUntrusted: (actor: string, event: string, fields: AuditFields) => void;
  log: Logger;
  now: () => number;
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

export function tokenInfo(t: StoredEnrollmentToken): EnrollmentToken {
  return {
    id: t.id,
    tags: t.tags,
    uses: t.uses,
    used: t.used,
    expiresAtMs: t.expiresAtMs,
    createdAtMs: t.createdAtMs,
    createdBy: t.createdBy,
    revokedAtMs: t.revokedAtMs ?? 0,
  };
}

export class EnrollmentDesk {
  constructor(private readonly deps: EnrollmentDeskDeps) {}

  private seed(): string {
    if (!this.deps.accountSeed) {
      throw new DragnetError(
        Codes.CONFIG,
        "this coordinator does not enrol agents: its config has no enrollment.accountSeed",
      );
    }
    return this.deps.accountSeed;
  }

  /** A new token; the returned text is all an agent needs and is shown only now. */
  async create(
    request: { tags: Record<string, string>; uses: number; expiresInMs: number },
    by: string,
  ): Promise<{ token: EnrollmentToken; secret: string }> {
    const seed = this.seed();
    const uses = request.uses || 1;
    const lifetime = request.expiresInMs || DEFAULT_TOKEN_LIFETIME_MS;
    if (!Number.isInteger(uses) || uses < 1 || uses > MAX_TOKEN_USES) {
      throw new DragnetError(Codes.PARAMS, `uses must be 1 to ${MAX_TOKEN_USES}`);
    }
    if (!Number.isInteger(lifetime) || lifetime < 1000 || lifetime > MAX_TOKEN_LIFETIME_MS) {
      throw new DragnetError(Codes.PARAMS, "a token expires after 1 second to 90 days");
    }
    for (const [k, v] of Object.entries(request.tags)) {
      const why = tagProblem(k, v);
      if (why) throw new DragnetError(Codes.PARAMS, why);
    }
    const now = this.deps.now();
    const id = newId(now);
    const secret = randomBytes(32).toString("base64url");
    const stored: StoredEnrollmentToken = {
      id,
      secretSha256: sha256(secret),
      tags: request.tags,
      uses,
      used: 0,
      expiresAtMs: now + lifetime,
      createdAtMs: now,
      createdBy: by,
    };
    // The token carries NATS credentials of its own, good only for asking to
    // enrol and only a little past the token's expiry (the server enforces
    // that; until then the coordinator answers a late agent with the reason).
    const creds = await userCreds(
      seed,
      `enroll-${id}`,
      enrollPermissions(id, this.deps.prefix),
      stored.expiresAtMs + CREDS_GRACE_MS,
    );
    await this.deps.store.putEnrollmentToken(stored);
    return { token: tokenInfo(stored), secret: encodeEnrollmentToken({ id, secret, creds }) };
  }

  async list(limit: number): Promise<EnrollmentToken[]> {
    return (await this.deps.store.listEnrollmentTokens(limit || 100)).map(tokenInfo);
  }

  async revoke(id: string): Promise<EnrollmentToken> {
    if (!(await this.deps.store.revokeEnrollmentToken(id, this.deps.now()))) {
      throw new DragnetError(Codes.NOT_FOUND, `no enrolment token ${id} that is still valid`);
    }
    return tokenInfo((await this.deps.store.getEnrollmentToken(id))!);
  }

  /** An enrolment request from NATS: answered either way, refusals with the reason. */
  async onMessage(msg: Msg): Promise<void> {
    let reply: EnrollmentReply;
    let who = "unknown agent";
    try {
      const req = parseEnrollmentRequest(msg.data);
      who = `agent ${req.agentId}`;
      if (!msg.reply?.startsWith(`${enrollInboxPrefix(req.tokenId)}.`)) {
        throw new DragnetError(Codes.SUBJECT_MISMATCH, "the reply subject is not the token's inbox");
      }
      const seed = this.seed();
      const now = this.deps.now();
      const token = await this.deps.store.enrollAgent(
        {
          agentId: req.agentId,
          publicKey: req.publicKey,
          tokenId: req.tokenId,
          hostname: req.hostname,
          enrolledAtMs: now,
        },
        (t, earlier) => this.admit(t, req, earlier, now),
      );
      const jwt = await userJwt(
        seed,
        `agent-${req.agentId}`,
        req.publicKey,
        agentPermissions(req.agentId, this.deps.prefix),
        now + this.deps.credentialsMs,
      );
      reply = { ok: true, agentId: req.agentId, jwt, tags: token.tags };
      this.deps.audit(`enrolment token ${token.id}`, "agent enrolled", {
        agentId: req.agentId,
        message: `${req.hostname} (${req.version}); use ${token.used} of ${token.uses}`,
      });
    } catch (err) {
      const p = problemOf(err, Codes.DECODE);
      reply = { ok: false, code: p.code, message: p.message };
      this.deps.auditUntrusted(who, "enrolment refused", { code: p.code, message: p.message });
    }
    if (msg.reply) msg.respond(JSON.stringify(reply));
  }

  /**
   * An enrolled agent asks for its credentials to be renewed before they
   * expire: answered with a new JWT for the same key, the same permissions
   * and a new expiry — unless the agent was revoked, or is not the key that
   * enrolled. Answers JSON: {"ok": true, "jwt"} or {"ok": false, "code", "message"}.
   */
  async onRenew(msg: Msg): Promise<void> {
    let reply: { ok: true; jwt: string; expiresAtMs: number } | { ok: false; code: string; message: string };
    let who = "unknown agent";
    try {
      const { agentId, userKey } = this.deps.authenticate(msg);
      who = `agent ${agentId}`;
      const enrolled = await this.deps.store.enrolledKey(agentId);
      if (enrolled !== userKey) {
        throw new DragnetError(
          Codes.NOT_ALLOWED,
          enrolled
            ? "not the key this agent enrolled with"
            : "this agent did not enrol here: its credentials are renewed by whoever issued them",
        );
      }
      const expiresAtMs = this.deps.now() + this.deps.credentialsMs;
      const jwt = await userJwt(
        this.seed(),
        `agent-${agentId}`,
        userKey,
        agentPermissions(agentId, this.deps.prefix),
        expiresAtMs,
      );
      reply = { ok: true, jwt, expiresAtMs };
      this.deps.audit(who, "credentials renewed", {
        agentId,
        message: `until ${new Date(expiresAtMs).toISOString()}`,
      });
    } catch (err) {
      const p = problemOf(err);
      reply = { ok: false, code: p.code, message: p.message };
      this.deps.auditUntrusted(who, "credentials not renewed", { code: p.code, message: p.message });
    }
    if (msg.reply) msg.respond(JSON.stringify(reply));
  }

  /** Refuses (throws, with the reason) or admits; true when this enrolment uses up one of the token's uses. */
  private admit(
    t: StoredEnrollmentToken | undefined,
    req: { tokenId: string; secret: string; agentId: string; publicKey: string },
    earlier: { publicKey: string; tokenId: string } | undefined,
    now: number,
  ): boolean {
    const given = Buffer.from(sha256(req.secret));
    if (!t || !timingSafeEqual(given, Buffer.from(t.secretSha256))) {
      throw new DragnetError(Codes.NOT_ALLOWED, "not a valid enrolment token");
    }
    if (t.revokedAtMs !== undefined) {
      throw new DragnetError(
        Codes.NOT_ALLOWED,
        `enrolment token ${t.id} was revoked at ${new Date(t.revokedAtMs).toISOString()}`,
      );
    }
    // The same agent, key and token again (its first answer was lost): answered again, not counted.
    if (earlier && earlier.publicKey === req.publicKey && earlier.tokenId === t.id) return false;
    if (now >= t.expiresAtMs) {
      throw new DragnetError(
        Codes.EXPIRED,
        `enrolment token ${t.id} expired at ${new Date(t.expiresAtMs).toISOString()}`,
      );
    }
    if (t.used >= t.uses) {
      throw new DragnetError(
        Codes.NOT_ALLOWED,
        `enrolment token ${t.id} was good for ${t.uses} enrolment${t.uses === 1 ? "" : "s"} and is used up`,
      );
    }
    // An agent id is an identity: a token lets a new host join, never take over an existing one.
    if (earlier ? earlier.publicKey !== req.publicKey : this.deps.knownAgent(req.agentId)) {
      throw new DragnetError(
        Codes.NOT_ALLOWED,
        `agent id ${req.agentId} is taken by an agent with another key; a new host enrols with a new id`,
      );
    }
    if (!isSubjectToken(req.agentId)) throw new DragnetError(Codes.PARAMS, "bad agent id");
    return true;
  }
}
