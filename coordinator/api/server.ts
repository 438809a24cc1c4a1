import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "../../common/mod.js";
import { type CoordinatorServer, CoordinatorService } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { actionCalls } from "./actions.js";
import { alertCalls } from "./alerts.js";
import { ApiCalls } from "./calls.js";
import { evidenceCalls } from "./evidence.js";
import { fleetCalls } from "./fleet.js";
import { incidentCalls } from "./incidents.js";
import { scheduleCalls } from "./schedules.js";

// The Coordinator gRPC service over TLS: every call goes through ApiCalls
// (authentication, audit, refusals with their codes) to the coordinator's
// parts; the handlers are grouped by area.

export function coordinatorApi(coordinator: Coordinator, log: Logger): CoordinatorServer {
  const calls = new ApiCalls(coordinator, log);
  return {
    ...actionCalls(coordinator, calls),
    ...alertCalls(coordinator, calls),
    ...incidentCalls(coordinator, calls),
    ...evidenceCalls(coordinator, calls),
    ...fleetCalls(coordinator, calls),
    ...scheduleCalls(coordinator, calls),
  };
}

export interface GrpcTls {
  cert: string;
  key: string;
}

/** Starts the gRPC server; resolves with the bound port. */
export async function startGrpcServer(
  coordinator: Coordinator,
  listen: string,
  tls: GrpcTls | "insecure",
  log: Logger,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  server.addService(CoordinatorService, coordinatorApi(coordinator, log));
  const credentials =
    tls === "insecure"
      ? grpc.ServerCredentials.createInsecure()
      : grpc.ServerCredentials.createSsl(
          null,
          [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }],
          false,
        );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}
