import { Codes, DragnetError } from "./errors.js";
import { isId } from "./ids.js";
import { isSubjectToken } from "./subjects.js";

// What an enrolment token holds and what agent and coordinator say to each
// other on <prefix>.enroll (small JSON messages, checked field by field).

const TOKEN_PREFIX = "DRAGNET-ENROLL-1.";
/** Enrolment requests are small; anything bigger is not one. */
const MAX_REQUEST_BYTES = 8 * 1024;

export interface EnrollmentTokenParts {
  id: string;
  secret: string;
  /** NATS credentials (JWT and seed) allowed to ask for enrolment until the token expires. */
  creds: string;
}

export interface EnrollmentRequest {
  tokenId: string;
  secret: string;
  agentId: string;
  /** The public key of the NATS user key pair the agent made (starts with "U"). */
  publicKey: string;
  hostname: string;
  version: string;
}

export type EnrollmentReply =
  | { ok: true; agentId: string; jwt: string; tags: Record<string, string> }
  | { ok: false; code: string; message: string };

export function encodeEnrollmentToken(t: EnrollmentTokenParts): string {
  return TOKEN_PREFIX + Buffer.from(JSON.stringify(t)).toString("base64url");
}

export function decodeEnrollmentToken(text: string): EnrollmentTokenParts {
  const bad = (why: string) => new DragnetError(Codes.PARAMS, `not a Dragnet enrolment token: ${why}`);
  const trimmed = text.trim();
  if (!trimmed.startsWith(TOKEN_PREFIX)) throw bad(`it does not start with ${TOKEN_PREFIX}`);
  let json: Partial<EnrollmentTokenParts>;
  try {
    json = JSON.parse(Buffer.from(trimmed.slice(TOKEN_PREFIX.length), "base64url").toString("utf8"));
  } catch {
    throw bad("it is cut or damaged");
  }
  if (typeof json.id !== "string" || !isId(json.id)) throw bad("no token id");
  if (typeof json.secret !== "string" || json.secret.length < 20) throw bad("no secret");
  if (typeof json.creds !== "string" || !json.creds.includes("BEGIN NATS USER JWT"))
    throw bad("no credentials");
  return json as EnrollmentTokenParts;
}

export function parseEnrollmentRequest(data: Uint8Array): EnrollmentRequest {
  const bad = (why: string) => new DragnetError(Codes.DECODE, `not an enrolment request: ${why}`);
  if (data.length > MAX_REQUEST_BYTES) throw bad(`over ${MAX_REQUEST_BYTES} bytes`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    throw bad("not JSON");
  }
  const text = (k: string, ok: (v: string) => boolean) => {
    const v = json?.[k];
    if (typeof v !== "string" || !ok(v)) throw bad(`bad ${k}`);
    return v;
  };
  return {
    tokenId: text("tokenId", isId),
    secret: text("secret", (v) => v.length > 0 && v.length <= 200),
    agentId: text("agentId", isSubjectToken),
    publicKey: text("publicKey", (v) => /^U[A-Z2-7]{55}$/.test(v)),
    hostname: text("hostname", (v) => v.length > 0 && v.length <= 255),
    version: text("version", (v) => v.length <= 64),
  };
}
