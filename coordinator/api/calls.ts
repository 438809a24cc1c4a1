import * as grpc from "@grpc/grpc-js";
import {
  API_AUTH_HEADER,
  Codes,
  DragnetError,
  type Logger,
  problemOf,
  type Role,
  type TrustedInvestigator,
} from "../../common/mod.js";
import type { AuditFields } from "../audit-log.js";
import type { Coordinator } from "../coordinator.js";

// What every call of the gRPC API goes through, whatever its shape (unary,
// server-streaming, client-streaming): the caller is authenticated (an
// investigator's signed token, common/api-auth.ts), the call is audit-logged
// with who made it and how it ended, and a refusal carries its stable code in
// the `dragnet-code` trailer and its reason in the status message.

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
  [Codes.UNAUTHENTICATED]: grpc.status.UNAUTHENTICATED,
  [Codes.WEIGHT]: grpc.status.PERMISSION_DENIED,
  [Codes.NOT_ALLOWED]: grpc.status.PERMISSION_DENIED,
  [Codes.FORBIDDEN]: grpc.status.PERMISSION_DENIED,
  [Codes.APPROVAL]: grpc.status.FAILED_PRECONDITION,
};

/**
 * The role each call needs (keyring `roles`). SubmitAction needs, for each
 * operation, the role that may sign it (checked by the submissions). A call
 * not listed here is refused: a new call must say who may make it.
 */
const ROLE_OF: Record<string, Role | "signer"> = {
  SubmitAction: "signer",
  ApproveAction: "approve",
  ListAgents: "read",
  PreviewTarget: "read",
  GetAction: "read",
  ListActions: "read",
  ListAudit: "read",
  VerifyAudit: "read",
  WatchAction: "read",
  ListAlerts: "read",
  WatchAlerts: "read",
  OpenIncident: "investigate",
  ListIncidents: "read",
  GetIncident: "read",
  ChangePhase: "investigate",
  AddNote: "investigate",
  VerifyIncident: "read",
  IncidentReport: "read",
  Notify: "investigate",
  RecordCustody: "investigate",
  RegisterEvidence: "investigate",
  VerifyEvidence: "read",
  ListEvidence: "read",
  GetEvidence: "read",
  CreateEnrollmentToken: "admin",
  ListEnrollmentTokens: "admin",
  RevokeEnrollmentToken: "admin",
  ListReleases: "read",
  PublishRelease: "admin",
  RevokeAgent: "admin",
  CreateSchedule: "investigate",
  ListSchedules: "read",
  GetSchedule: "read",
  StopSchedule: "investigate",
  ExportStatus: "read",
};

/** Refuses a caller whose roles do not include what the call needs. */
function checkRole(method: string, who: TrustedInvestigator): void {
  const role = ROLE_OF[method];
  if (role === undefined) throw new DragnetError(Codes.FORBIDDEN, `${method}: no role may call it`);
  if (role === "signer") {
    if (!who.roles.has("investigate") && !who.roles.has("respond")) {
      throw new DragnetError(
        Codes.FORBIDDEN,
        `${who.name} may not submit actions (neither investigate nor respond role)`,
      );
    }
    return;
  }
  if (!who.roles.has(role)) {
    throw new DragnetError(Codes.FORBIDDEN, `${who.name} may not call ${method}: it needs the ${role} role`);
  }
}

/** A watcher whose unread messages pass this is cut off rather than make the coordinator hoard them. */
const MAX_STREAM_BUFFER_BYTES = 64 * 1024 * 1024;

/** A list's size as asked (0: the default), kept within 1 and `max`. */
export function clampLimit(asked: number, fallback: number, max: number): number {
  return Math.min(Math.max(asked || fallback, 1), max);
}

/** The action a request or response names, if any (a response has the full id, a request maybe a prefix). */
function actionIdOf(message: unknown): string {
  const m = message as { actionId?: unknown; summary?: { id?: unknown } };
  const id = m?.actionId ?? m?.summary?.id;
  return typeof id === "string" ? id.slice(0, 26) : "";
}

/** The messages a server-streaming call sends, and how it ends. */
export interface Outbound<Res> {
  /** Sends a message; false once the caller's buffer is full (wait for `drained`). */
  write(message: Res): boolean;
  /** Sends a message to a watcher, cutting the call off if the watcher fell too far behind. */
  push(message: Res): void;
  drained(fn: () => void): void;
  cancelled(fn: () => void): void;
  end(): void;
  fail(err: unknown): void;
}

/** What a server-streaming handler returns once started: how to stop it, and what to audit. */
export interface Started {
  stop?: () => void;
  audit?: AuditFields;
}

type Call = { getPath(): string; getPeer(): string; metadata: grpc.Metadata };

export class ApiCalls {
  constructor(
    private readonly coordinator: Coordinator,
    private readonly log: Logger,
  ) {}

  /** A refusal as gRPC carries it; anything but a DragnetError is logged as a fault. */
  serviceError(err: unknown, method: string): grpc.ServiceError {
    const problem = problemOf(err);
    if (!(err instanceof DragnetError)) this.log.error("API call failed", { method, error: err });
    const metadata = new grpc.Metadata();
    metadata.set("dragnet-code", problem.code);
    const status = STATUS_OF[problem.code] ?? grpc.status.INTERNAL;
    return Object.assign(new Error(problem.message), { code: status, details: problem.message, metadata });
  }

  unary<Req, Res>(
    method: string,
    fn: (req: Req, who: TrustedInvestigator) => Res | Promise<Res>,
    describe: (req: Req, res: Res) => string = () => "",
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      this.run(call, method, call.request, async (who) => {
        const res = await fn(call.request, who);
        const audit = {
          actionId: actionIdOf(res) || actionIdOf(call.request),
          message: describe(call.request, res),
        };
        return { value: res, audit };
      }).then(
        (res) => callback(null, res),
        (err) => callback(err, null),
      );
    };
  }

  clientStream<Req, Res>(
    method: string,
    fn: (parts: AsyncIterable<Req>, who: TrustedInvestigator) => Promise<Res>,
    describe: (res: Res) => AuditFields,
  ): grpc.handleClientStreamingCall<Req, Res> {
    return (call, callback) => {
      this.run(call, method, undefined, async (who) => {
        const res = await fn(call, who);
        return { value: res, audit: describe(res) };
      }).then(
        (res) => callback(null, res),
        (err) => {
          call.destroy();
          callback(err, null);
        },
      );
    };
  }

  serverStream<Req, Res>(
    method: string,
    start: (req: Req, who: TrustedInvestigator, out: Outbound<Res>) => Started | Promise<Started>,
  ): grpc.handleServerStreamingCall<Req, Res> {
    return (call) => {
      let ended = false;
      let stop = () => {};
      const finish = () => {
        if (ended) return false;
        ended = true;
        stop();
        return true;
      };
      const out: Outbound<Res> = {
        write: (m) => (ended ? false : call.write(m)),
        push: (m) => {
          if (ended) return;
          if (call.writableLength <= MAX_STREAM_BUFFER_BYTES) {
            call.write(m);
          } else if (finish()) {
            const details = "the watcher fell too far behind; watch again to resume";
            failStream(
              call,
              Object.assign(new Error(details), {
                code: grpc.status.RESOURCE_EXHAUSTED,
                details,
                metadata: new grpc.Metadata(),
              }),
            );
          }
        },
        drained: (fn) => call.once("drain", fn),
        cancelled: (fn) => call.on("cancelled", fn),
        end: () => finish() && call.end(),
        fail: (err) => finish() && failStream(call, this.serviceError(err, method)),
      };
      call.on("cancelled", () => finish());
      this.run(call, method, call.request, async (who) => {
        const started = await start(call.request, who, out);
        stop = started.stop ?? stop;
        if (ended) stop();
        return { value: undefined, audit: started.audit ?? { actionId: actionIdOf(call.request) } };
      }).catch((err: grpc.ServiceError) => {
        if (finish()) failStream(call, err);
      });
    };
  }

  /**
   * Authenticates the caller, runs the call, and audits how it ended: with
   * what the call says of itself, or with the refusal's code (an
   * unauthenticated call is audited as untrusted, with the peer's address).
   * Rejects with the refusal as gRPC carries it.
   */
  private async run<T>(
    call: Call,
    method: string,
    request: unknown,
    body: (who: TrustedInvestigator) => Promise<{ value: T; audit: AuditFields }>,
  ): Promise<T> {
    let who: TrustedInvestigator;
    try {
      const token = call.metadata.get(API_AUTH_HEADER)[0];
      who = this.coordinator.authenticate(typeof token === "string" ? token : undefined, call.getPath());
    } catch (err) {
      const p = problemOf(err);
      this.coordinator.audit.untrusted("api", `unauthenticated ${call.getPeer()}`, method, {
        code: p.code,
        message: p.message,
      });
      throw this.serviceError(err, method);
    }
    try {
      checkRole(method, who);
      const { value, audit } = await body(who);
      this.coordinator.audit.record(who.name, method, audit);
      return value;
    } catch (err) {
      const p = problemOf(err);
      this.coordinator.audit.record(who.name, method, {
        actionId: actionIdOf(request),
        code: p.code,
        message: p.message,
      });
      this.log.info("API refusal", { method, investigator: who.name, ...p });
      throw this.serviceError(err, method);
    }
  }
}

/**
 * Ends a server stream with an error status. Not `destroy(err)`: grpc-js sends
 * a server stream's status when the stream ends, and a destroyed stream never
 * does — the client waited for ever (evidence get of an unknown id).
 */
function failStream(call: grpc.ServerWritableStream<unknown, unknown>, err: grpc.ServiceError): void {
  call.emit("error", err);
}
