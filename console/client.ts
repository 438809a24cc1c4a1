import * as grpc from "@grpc/grpc-js";
import { type Code, Codes, DragnetError } from "../common/mod.js";
import {
  type ActionDetail,
  type ActionEvent,
  type ActionSummary,
  type AgentInfo,
  CoordinatorClient,
  type SignedAction,
  type SubmitActionResponse,
} from "../proto/mod.js";

// The console's side of the Coordinator gRPC service: promises instead of
// callbacks, and gRPC errors turned back into DragnetErrors with the
// coordinator's stable code.

export interface ClientOptions {
  /** CA certificate (PEM) the coordinator's certificate must chain to. */
  ca?: Buffer;
  insecure?: boolean;
  deadlineMs?: number;
}

function toDragnetError(err: grpc.ServiceError, address: string): DragnetError {
  const code = err.metadata?.get("dragnet-code")[0];
  if (typeof code === "string" && code.startsWith("DRAGNET_E_"))
    return new DragnetError(code as Code, err.details);
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
    return new DragnetError(Codes.UNAVAILABLE, `cannot reach the coordinator at ${address}: ${err.details}`);
  }
  return new DragnetError(Codes.INTERNAL, `coordinator error (${grpc.status[err.code]}): ${err.details}`);
}

export class CoordinatorApi {
  private readonly client: CoordinatorClient;
  private readonly deadlineMs: number;

  constructor(
    readonly address: string,
    options: ClientOptions,
  ) {
    const credentials = options.insecure
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(options.ca ?? null);
    this.client = new CoordinatorClient(address, credentials, {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
    this.deadlineMs = options.deadlineMs ?? 15_000;
  }

  private call<Req, Res>(
    method: (
      req: Req,
      md: grpc.Metadata,
      opts: Partial<grpc.CallOptions>,
      cb: (e: grpc.ServiceError | null, r: Res) => void,
    ) => unknown,
    req: Req,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(
        this.client,
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + this.deadlineMs },
        (err, res) => (err ? reject(toDragnetError(err, this.address)) : resolve(res)),
      );
    });
  }

  submitAction(action: SignedAction): Promise<SubmitActionResponse> {
    return this.call(this.client.submitAction, { action });
  }

  async listAgents(target = ""): Promise<AgentInfo[]> {
    return (await this.call(this.client.listAgents, { target })).agents;
  }

  getAction(actionId: string, includeResults: boolean): Promise<ActionDetail> {
    return this.call(this.client.getAction, { actionId, includeResults });
  }

  async listActions(limit: number): Promise<ActionSummary[]> {
    return (await this.call(this.client.listActions, { limit })).actions;
  }

  async previewTarget(target: string): Promise<AgentInfo[]> {
    return (await this.call(this.client.previewTarget, { target })).agents;
  }

  /** Calls `onEvent` for each event until the stream ends (resolves) or fails (rejects). */
  watchAction(actionId: string, onEvent: (event: ActionEvent) => boolean | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const stream = this.client.watchAction({ actionId });
      let stopped = false;
      stream.on("data", (event: ActionEvent) => {
        if (stopped) return;
        if (onEvent(event) === false) {
          stopped = true;
          stream.cancel();
          resolve();
        }
      });
      stream.on("end", () => resolve());
      stream.on("error", (err: grpc.ServiceError) => {
        if (stopped || err.code === grpc.status.CANCELLED) resolve();
        else reject(toDragnetError(err, this.address));
      });
    });
  }

  close(): void {
    this.client.close();
  }
}
