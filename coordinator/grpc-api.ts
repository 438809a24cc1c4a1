import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { Codes, DragnetError, type Logger, problemOf } from "../common/mod.js";
import { type ActionEvent, type CoordinatorServer, CoordinatorService } from "../proto/mod.js";
import type { Coordinator } from "./coordinator.js";

// The Coordinator gRPC service over TLS: each call is a thin translation to a
// Coordinator method; refusals carry their stable code in the `dragnet-code`
// trailer and their reason in the status message.

const STATUS_OF: Partial<Record<string, grpc.status>> = {
  [Codes.UNSIGNED]: grpc.status.PERMISSION_DENIED,
  [Codes.SIG_UNKNOWN_KEY]: grpc.status.PERMISSION_DENIED,
  [Codes.SIG_INVALID]: grpc.status.PERMISSION_DENIED,
  [Codes.EXPIRED]: grpc.status.FAILED_PRECONDITION,
  [Codes.NOT_YET_VALID]: grpc.status.FAILED_PRECONDITION,
  [Codes.NO_TARGET]: grpc.status.FAILED_PRECONDITION,
  [Codes.NOT_FOUND]: grpc.status.NOT_FOUND,
  [Codes.TARGET_PARSE]: grpc.status.INVALID_ARGUMENT,
  [Codes.ACTION_INVALID]: grpc.status.INVALID_ARGUMENT,
  [Codes.UNKNOWN_MODULE]: grpc.status.INVALID_ARGUMENT,
  [Codes.PARAMS]: grpc.status.INVALID_ARGUMENT,
  [Codes.DECODE]: grpc.status.INVALID_ARGUMENT,
  [Codes.TOO_LARGE]: grpc.status.INVALID_ARGUMENT,
  [Codes.AMBIGUOUS]: grpc.status.INVALID_ARGUMENT,
};

const MAX_WATCH_BUFFER_BYTES = 64 * 1024 * 1024;

function toServiceError(err: unknown, log: Logger, method: string): Partial<grpc.ServiceError> {
  const problem = problemOf(err);
  if (!(err instanceof DragnetError)) log.error("API call failed", { method, error: err });
  const metadata = new grpc.Metadata();
  metadata.set("dragnet-code", problem.code);
  return {
    code: STATUS_OF[problem.code] ?? grpc.status.INTERNAL,
    details: problem.message,
    metadata,
  };
}

function unary<Req, Res>(log: Logger, method: string, fn: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    try {
      callback(null, fn(call.request));
    } catch (err) {
      log.info("API refusal", { method, ...problemOf(err) });
      callback(toServiceError(err, log, method), null);
    }
  };
}

export function coordinatorApi(coordinator: Coordinator, log: Logger): CoordinatorServer {
  return {
    submitAction: unary(log, "SubmitAction", (req) => coordinator.submit(req.action)),
    listAgents: unary(log, "ListAgents", (req) => ({ agents: coordinator.listAgents(req.target) })),
    getAction: unary(log, "GetAction", (req) => coordinator.getAction(req.actionId, req.includeResults)),
    listActions: unary(log, "ListActions", (req) => ({ actions: coordinator.listActions(req.limit) })),
    previewTarget: unary(log, "PreviewTarget", (req) => ({
      agents: coordinator.listAgents(req.target || "all"),
    })),
    watchAction(call) {
      let unsubscribe: () => void = () => {};
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        unsubscribe();
        call.end();
      };
      call.on("cancelled", () => {
        ended = true;
        unsubscribe();
      });
      try {
        const send = (event: ActionEvent) => {
          if (ended) return;
          // A watcher that does not read must not make the coordinator hoard its events.
          if (call.writableLength > MAX_WATCH_BUFFER_BYTES) {
            ended = true;
            unsubscribe();
            call.destroy({
              code: grpc.status.RESOURCE_EXHAUSTED,
              details: "the watcher fell too far behind; watch again to resume",
            } as grpc.ServiceError);
            return;
          }
          call.write(event);
        };
        unsubscribe = coordinator.watch(call.request.actionId, send, end);
        if (ended) unsubscribe();
      } catch (err) {
        ended = true;
        call.destroy(toServiceError(err, log, "WatchAction") as grpc.ServiceError);
      }
    },
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
