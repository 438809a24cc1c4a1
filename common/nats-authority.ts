import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";
import { createAccount, createOperator, createUser, fromSeed } from "@nats-io/nkeys";
import { agentInboxPrefix } from "./nats-link.js";
import { DEFAULT_PREFIX } from "./subjects.js";

// The NATS trust chain of a Dragnet deployment (decentralised JWT auth): an
// operator, the fleet's account and a system account. The nats-server trusts
// the operator and preloads the accounts; every agent and coordinator gets its
// own user credentials signed by the fleet account, with permissions limited
// to its own subjects. New agents need no server reload. Used by the lab, and by
// the coordinator to enrol agents (it needs only the account seed).

export interface NatsAuthority {
  operatorSeed: string;
  accountSeed: string;
  systemSeed: string;
  operatorJwt: string;
  accountJwt: string;
  systemJwt: string;
}

const UNLIMITED = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  // JetStream enabled for the fleet account.
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
};

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

export async function createNatsAuthority(): Promise<NatsAuthority> {
  const operator = createOperator();
  const account = createAccount();
  const system = createAccount();
  const operatorJwt = await encodeOperator("dragnet", operator, { system_account: system.getPublicKey() });
  const accountJwt = await encodeAccount("fleet", account, { limits: UNLIMITED } as never, {
    signer: operator,
  });
  const systemJwt = await encodeAccount("system", system, {}, { signer: operator });
  return {
    operatorSeed: text(operator.getSeed()),
    accountSeed: text(account.getSeed()),
    systemSeed: text(system.getSeed()),
    operatorJwt,
    accountJwt,
    systemJwt,
  };
}

/** The nats-server configuration lines that trust this authority. */
export function natsServerTrustConfig(a: NatsAuthority): string {
  const account = fromSeed(Buffer.from(a.accountSeed)).getPublicKey();
  const system = fromSeed(Buffer.from(a.systemSeed)).getPublicKey();
  return [
    `operator: ${a.operatorJwt}`,
    `system_account: ${system}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${account}: ${a.accountJwt}`,
    `  ${system}: ${a.systemJwt}`,
    "}",
    "",
  ].join("\n");
}

export interface Permissions {
  pub: string[];
  sub: string[];
}

/** A user JWT for `userKey` (a key pair, or a public key whose seed stays elsewhere), signed by the fleet account. */
export function userJwt(
  accountSeed: string,
  name: string,
  userKey: Parameters<typeof encodeUser>[1],
  allow: Permissions,
  expiresAtMs?: number,
): Promise<string> {
  const account = fromSeed(Buffer.from(accountSeed));
  return encodeUser(
    name,
    userKey,
    account,
    { pub: { allow: allow.pub }, sub: { allow: allow.sub } },
    expiresAtMs === undefined ? {} : { exp: Math.floor(expiresAtMs / 1000) },
  );
}

/** Credentials (JWT and seed) for a new user with exactly these permissions. */
export async function userCreds(
  accountSeed: string,
  name: string,
  allow: Permissions,
  expiresAtMs?: number,
): Promise<string> {
  const user = createUser();
  return text(fmtCreds(await userJwt(accountSeed, name, user, allow, expiresAtMs), user));
}

/** JetStream object store bucket that holds signed agent releases (the coordinator hands them out). */
export const RELEASES_BUCKET = "dragnet-releases";
/** JetStream object store bucket that holds collected evidence when several coordinators share a store. */
export const EVIDENCE_BUCKET = "dragnet-evidence";

/**
 * An agent may publish only its own heartbeats, acks, results, alerts,
 * evidence chunks, release requests and clock requests, and read only its own commands and
 * the replies to its own requests. No JetStream API at all: the server sends
 * an API reply wherever its requester says, so an agent allowed one could
 * have the server publish on another agent's subjects.
 */
export function agentPermissions(agentId: string, prefix = DEFAULT_PREFIX): Permissions {
  const own = (kind: string) => `${prefix}.${kind}.${agentId}`;
  return {
    // Acks, results, evidence, release and time requests name the coordinator they go to;
    // results also their command, alerts their own id.
    pub: [
      own("hb"),
      `${own("ack")}.*`,
      `${own("res")}.*.*`,
      `${own("alert")}.*`,
      `${own("evidence")}.*`,
      `${own("release")}.*`,
      `${own("time")}.*`,
      // Renewing its own credentials before they expire.
      own("renew"),
    ],
    sub: [own("cmd"), `${agentInboxPrefix(agentId)}.>`],
  };
}

export function agentCreds(a: NatsAuthority, agentId: string, prefix = DEFAULT_PREFIX): Promise<string> {
  return userCreds(a.accountSeed, `agent-${agentId}`, agentPermissions(agentId, prefix));
}

/** Where an enrolling agent asks for its credentials (the coordinator answers). */
export function enrollSubject(prefix = DEFAULT_PREFIX): string {
  return `${prefix}.enroll`;
}

/** The inbox prefix of agents enrolling with one token: replies to them go there. */
export function enrollInboxPrefix(tokenId: string): string {
  return `_INBOX.enroll.${tokenId}`;
}

/** What an enrolment token's own NATS user may do until the token expires: ask to enrol, read the answer. */
export function enrollPermissions(tokenId: string, prefix = DEFAULT_PREFIX): Permissions {
  return { pub: [enrollSubject(prefix)], sub: [`${enrollInboxPrefix(tokenId)}.>`] };
}

/**
 * The coordinator publishes commands, reads what every agent sends, manages the streams and answers
 * enrolments; coordinators sharing a store tell each other of actions on <prefix>.coord.>.
 */
export function coordinatorCreds(a: NatsAuthority, prefix = DEFAULT_PREFIX): Promise<string> {
  return userCreds(a.accountSeed, "coordinator", {
    // $JS.FC: flow control of the ordered consumer an object store read uses (release copies).
    pub: [`${prefix}.cmd.*`, `${prefix}.coord.>`, "_INBOX.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$O.>"],
    sub: [
      `${prefix}.coord.>`,
      `${prefix}.hb.*`,
      `${prefix}.ack.*.*`,
      `${prefix}.res.*.*.*`,
      `${prefix}.alert.*.*`,
      `${prefix}.evidence.*.*`,
      `${prefix}.release.*.*`,
      `${prefix}.time.*.*`,
      `${prefix}.renew.*`,
      enrollSubject(prefix),
      "_INBOX.>",
    ],
  });
}
