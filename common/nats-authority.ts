import { encodeAccount, encodeOperator, encodeUser, fmtCreds } from "@nats-io/jwt";
import { createAccount, createOperator, createUser, fromSeed } from "@nats-io/nkeys";
import { agentInboxPrefix } from "./nats-link.js";
import { DEFAULT_PREFIX } from "./subjects.js";

// The NATS trust chain of a Dragnet deployment (decentralised JWT auth): an
// operator, the fleet's account and a system account. The nats-server trusts
// the operator and preloads the accounts; every agent and coordinator gets its
// own user credentials signed by the fleet account, with permissions limited
// to its own subjects. New agents need no server reload. Used by the lab and
// (later) enrolment, never by agents.

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

/** Credentials for a user with exactly these publish and subscribe permissions. */
export async function userCreds(
  a: NatsAuthority,
  name: string,
  pub: string[],
  sub: string[],
): Promise<string> {
  const user = createUser();
  const account = fromSeed(Buffer.from(a.accountSeed));
  const jwt = await encodeUser(name, user, account, { pub: { allow: pub }, sub: { allow: sub } });
  return text(fmtCreds(jwt, user));
}

/**
 * An agent may publish only its own heartbeats, acks, results, alerts and evidence, and
 * read only its own commands and the replies to its own requests.
 */
export function agentCreds(a: NatsAuthority, agentId: string, prefix = DEFAULT_PREFIX): Promise<string> {
  const own = (kind: string) => `${prefix}.${kind}.${agentId}`;
  return userCreds(
    a,
    `agent-${agentId}`,
    // Acks and results carry the coordinator they go to as a last token.
    [own("hb"), `${own("ack")}.*`, `${own("res")}.*`, own("alert"), `${own("evidence")}.*`],
    [own("cmd"), `${agentInboxPrefix(agentId)}.>`],
  );
}

/** The coordinator publishes commands, reads what every agent sends, and manages and consumes the results stream. */
export function coordinatorCreds(a: NatsAuthority, prefix = DEFAULT_PREFIX): Promise<string> {
  return userCreds(
    a,
    "coordinator",
    [`${prefix}.cmd.*`, "_INBOX.>", "$JS.API.>", "$JS.ACK.>"],
    [`${prefix}.hb.*`, `${prefix}.ack.*.*`, `${prefix}.res.*.*`, `${prefix}.alert.*`, "_INBOX.>"],
  );
}
