// Many agents behind one NATS connection, for measuring the coordinator alone:
// heartbeats for N agent ids, and for every command an acknowledgement and a
// result published through JetStream, as fast as they come. No signature is
// checked and no module runs — that is what bench:sweep measures with real
// agents. Spec on argv[2] (JSON); prints "ready" once its agents are
// announced; stops on SIGTERM.
import { readFileSync } from "node:fs";
import { connect, headers } from "@nats-io/transport-node";
import { newId } from "../common/mod.js";
import { natsConnectOptions } from "../common/nats-link.js";
import {
  AckStatus,
  ActionBody,
  CommandAck,
  CommandEnvelope,
  CommandResult,
  CommandStatus,
  Heartbeat,
} from "../proto/api.js";

export interface SimulatorSpec {
  servers: string[];
  caFile: string;
  creds: string;
  inboxPrefix: string;
  agents: number;
  heartbeatIntervalMs: number;
  /** Answer commands (bench:ingest) or only send heartbeats (bench:idle). */
  answer: boolean;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as SimulatorSpec;
const nc = await connect({
  ...natsConnectOptions({ servers: spec.servers, ca: spec.caFile, creds: spec.creds, insecure: false }),
  inboxPrefix: spec.inboxPrefix,
});
const ids = Array.from({ length: spec.agents }, () => newId());
const startedAtMs = Date.now();

function heartbeat(id: string, i: number): Uint8Array {
  return Heartbeat.encode(
    Heartbeat.fromPartial({
      agentId: id,
      hostname: `sim-${i}`,
      os: "linux",
      arch: "x64",
      version: "0.1.0",
      addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
      tags: { sim: "true" },
      startedAtMs,
      sentAtMs: Date.now(),
      intervalMs: spec.heartbeatIntervalMs,
    }),
  ).finish();
}

// Heartbeats spread evenly over the interval, as a fleet's would be.
for (const [i, id] of ids.entries()) nc.publish(`dragnet.hb.${id}`, heartbeat(id, i));
await nc.flush();
const perTick = Math.ceil(spec.agents / (spec.heartbeatIntervalMs / 100));
let cursor = 0;
setInterval(() => {
  for (let k = 0; k < perTick; k++) {
    const i = cursor++ % spec.agents;
    nc.publish(`dragnet.hb.${ids[i]}`, heartbeat(ids[i]!, i));
  }
}, 100);

if (spec.answer) {
  nc.subscribe("dragnet.cmd.*", {
    callback: (_err, m) => {
      const agentId = m.subject.split(".")[2]!;
      const env = CommandEnvelope.decode(m.data);
      const actionId = env.action ? ActionBody.decode(env.action.body).id : "";
      nc.publish(
        `dragnet.ack.${agentId}.${env.coordinator}`,
        CommandAck.encode({
          commandId: env.commandId,
          actionId,
          agentId,
          status: AckStatus.ACK_STATUS_RECEIVED,
          problem: undefined,
          atMs: Date.now(),
        }).finish(),
      );
      const now = Date.now();
      const result = CommandResult.fromPartial({
        commandId: env.commandId,
        actionId,
        agentId,
        status: CommandStatus.COMMAND_STATUS_SUCCESS,
        found: true,
        startedAtMs: now,
        finishedAtMs: now,
      });
      // Into the stream without waiting for its acknowledgement (real agents wait; see agent.ts):
      // what is measured here is the coordinator, not this producer.
      const h = headers();
      h.set("Nats-Msg-Id", env.commandId);
      nc.publish(`dragnet.res.${agentId}.${env.coordinator}`, CommandResult.encode(result).finish(), {
        headers: h,
      });
    },
  });
}
process.stdout.write("ready\n");
process.on("SIGTERM", () => process.exit(0));
