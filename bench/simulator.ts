// Many agents behind one NATS connection, for measuring the coordinator alone:
// heartbeats for N agent ids, and for every command a result published through
// JetStream at once (no separate acknowledgement, as an agent's fast command), each signed as
// its agent would sign it (a NATS user key and JWT per simulated agent, made
// with the fleet account's seed). No action signature is checked and no
// module runs — that is what bench:sweep measures with real agents. Spec on
// argv[2] (JSON); prints "ready" once its agents are announced; stops on
// SIGTERM.

import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { fromSeed } from "@nats-io/nkeys";
import { connect, headers, type MsgHdrs } from "@nats-io/transport-node";
import { AgentSigner, publicNkey, seedPrivateKey } from "../common/agent-identity.js";
import { newId } from "../common/mod.js";
import { agentPermissions } from "../common/nats-authority.js";
import { natsConnectOptions } from "../common/nats-link.js";
import { ActionBody, CommandEnvelope, CommandResult, CommandStatus, Heartbeat } from "../proto/api.js";

export interface SimulatorSpec {
  servers: string[];
  caFile: string;
  creds: string;
  /** The fleet account's seed: each simulated agent gets a user JWT of its own from it. */
  accountSeed: string;
  inboxPrefix: string;
  agents: number;
  heartbeatIntervalMs: number;
  /** Answer commands (bench:ingest) or only send heartbeats (bench:idle). */
  answer: boolean;
  /** Each answer holds one file match (bench:ui: a row per agent), one in 100 with another hash. */
  withRows?: boolean;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as SimulatorSpec;
const nc = await connect({
  ...natsConnectOptions({ servers: spec.servers, ca: spec.caFile, creds: spec.creds, insecure: false }),
  inboxPrefix: spec.inboxPrefix,
});
const ids = Array.from({ length: spec.agents }, () => newId());
const accountPublic = fromSeed(Buffer.from(spec.accountSeed)).getPublicKey();
const accountKey = seedPrivateKey(spec.accountSeed);
const b64url = (v: string | Uint8Array) => Buffer.from(v).toString("base64url");

/**
 * A user JWT naming agent `id`, as the coordinator's enrolment makes them,
 * signed with node:crypto: nkeys' own signing takes ~0.1 s a key, minutes
 * for a simulated fleet. Only for signing here: the simulator connects as itself.
 */
function agentJwt(id: string, userKey: string): string {
  const claims = {
    jti: b64url(randomBytes(16)),
    iat: Math.floor(Date.now() / 1000),
    iss: accountPublic,
    name: `agent-${id}`,
    sub: userKey,
    nats: { pub: { allow: agentPermissions(id).pub }, type: "user", version: 2 },
  };
  const unsigned = `${b64url(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" }))}.${b64url(JSON.stringify(claims))}`;
  return `${unsigned}.${b64url(sign(null, Buffer.from(unsigned), accountKey))}`;
}

const signers = new Map<string, AgentSigner>();
for (const id of ids) {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  signers.set(id, new AgentSigner(agentJwt(id, publicNkey(raw, "user")), privateKey));
}
const startedAtMs = Date.now();

/** The headers agent `id` signs `data` on `subject` with (and more, if given). */
function signed(id: string, subject: string, data: Uint8Array, more: Record<string, string> = {}): MsgHdrs {
  const h = headers();
  for (const [k, v] of Object.entries({ ...signers.get(id)!.sign(subject, data), ...more })) h.set(k, v);
  return h;
}

function publish(id: string, subject: string, data: Uint8Array, more?: Record<string, string>): void {
  nc.publish(subject, data, { headers: signed(id, subject, data, more) });
}

function heartbeat(id: string, i: number): Uint8Array {
  return Heartbeat.encode(
    Heartbeat.fromPartial({
      agentId: id,
      hostname: `sim-${i}`,
      os: "linux",
      arch: "x64",
      version: "0.1.0",
      addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
      tags: { sim: "true", half: String(i % 2) },
      startedAtMs,
      sentAtMs: Date.now(),
      intervalMs: spec.heartbeatIntervalMs,
    }),
  ).finish();
}

// Heartbeats spread evenly over the interval, as a fleet's would be.
for (const [i, id] of ids.entries()) publish(id, `dragnet.hb.${id}`, heartbeat(id, i));
await nc.flush();
const perTick = Math.ceil(spec.agents / (spec.heartbeatIntervalMs / 100));
let cursor = 0;
setInterval(() => {
  for (let k = 0; k < perTick; k++) {
    const i = cursor++ % spec.agents;
    publish(ids[i]!, `dragnet.hb.${ids[i]}`, heartbeat(ids[i]!, i));
  }
}, 100);

/** A file module answer of one match: the same file everywhere, but on one agent in 100 another hash. */
function fileRow(agentId: string) {
  const odd = Number.parseInt(agentId.slice(-2), 36) % 100 === 0;
  return {
    module: {
      $case: "file" as const,
      value: {
        matches: [
          {
            search: "s1",
            path: "/usr/sbin/sshd",
            size: 1_212_344,
            mode: "-rwxr-xr-x",
            mtimeMs: 1_764_000_000_000,
            sha256: odd ? "0b".repeat(32) : "5e".repeat(32),
          },
        ],
      },
    },
  };
}

if (spec.answer) {
  nc.subscribe("dragnet.cmd.*", {
    callback: (_err, m) => {
      const agentId = m.subject.split(".")[2]!;
      const env = CommandEnvelope.decode(m.data);
      const actionId = env.action ? ActionBody.decode(env.action.body).id : "";
      // Answered at once, as a real agent's fast command: the result is its acknowledgement (agent.ts, ACK_AFTER_MS).
      const now = Date.now();
      const result = CommandResult.fromPartial({
        commandId: env.commandId,
        actionId,
        agentId,
        status: CommandStatus.COMMAND_STATUS_SUCCESS,
        found: true,
        startedAtMs: now,
        finishedAtMs: now,
        ...(spec.withRows ? { operations: [fileRow(agentId)] } : {}),
      });
      // Into the stream without waiting for its acknowledgement (real agents wait; see agent.ts):
      // what is measured here is the coordinator, not this producer.
      publish(
        agentId,
        `dragnet.res.${agentId}.${env.coordinator}.${env.commandId}`,
        CommandResult.encode(result).finish(),
        { "Nats-Msg-Id": `${agentId}.${env.commandId}` },
      );
    },
  });
}
process.stdout.write("ready\n");
process.on("SIGTERM", () => process.exit(0));
