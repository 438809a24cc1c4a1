import { createReadStream, readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  API_AUTH_HEADER,
  Codes,
  DragnetError,
  type Logger,
  problemOf,
  type TrustedInvestigator,
} from "../common/mod.js";
import {
  type ActionEvent,
  type CoordinatorServer,
  CoordinatorService,
  type StoredAlert,
} from "../proto/api.js";
import type { AuditFields } from "./audit-log.js";
import type { Coordinator } from "./coordinator.js";

// The Coordinator gRPC service over TLS: each call is authenticated (an
// investigator's signed token, common/api-auth.ts), audit-logged with who made
// it, and translated to a Coordinator method; refusals carry their stable code
// in the `dragnet-code` trailer and their reason in the status message.

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
  [Codes.APPROVAL]: grpc.status.FAILED_PRECONDITION,
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

type Authenticated = { getPath(): string; getPeer(): string; metadata: grpc.Metadata };

/** The action a request or response names, if any (a response has the full id, a request maybe a prefix). */
function actionIdOf(message: unknown): string {
  const m = message as { actionId?: unknown; summary?: { id?: unknown } };
  const id = m?.actionId ?? m?.summary?.id;
  return typeof id === "string" ? id.slice(0, 26) : "";
}

export function coordinatorApi(coordinator: Coordinator, log: Logger): CoordinatorServer {
  /** Who is calling; throws UNAUTHENTICATED (audited with the peer's address). */
  const investigatorOf = (call: Authenticated, method: string): TrustedInvestigator => {
    const token = call.metadata.get(API_AUTH_HEADER)[0];
    try {
      return coordinator.authenticate(typeof token === "string" ? token : undefined, call.getPath());
    } catch (err) {
      const p = problemOf(err);
      coordinator.auditUntrusted(`unauthenticated ${call.getPeer()}`, method, {
        code: p.code,
        message: p.message,
      });
      throw err;
    }
  };

  function unary<Req, Res>(
    method: string,
    fn: (req: Req, investigator: TrustedInvestigator) => Res | Promise<Res>,
    describe: (req: Req, res: Res) => string = () => "",
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let investigator: string | undefined;
      const refuse = (err: unknown) => {
        const p = problemOf(err);
        if (investigator !== undefined) {
          coordinator.audit(investigator, method, {
            actionId: actionIdOf(call.request),
            code: p.code,
            message: p.message,
          });
        }
        log.info("API refusal", { method, investigator, ...p });
        callback(toServiceError(err, log, method), null);
      };
      const answer = (res: Res) => {
        coordinator.audit(investigator!, method, {
          actionId: actionIdOf(res) || actionIdOf(call.request),
          message: describe(call.request, res),
        });
        callback(null, res);
      };
      try {
        const who = investigatorOf(call, method);
        investigator = who.name;
        const res = fn(call.request, who);
        if (res instanceof Promise) res.then(answer, refuse);
        else answer(res);
      } catch (err) {
        refuse(err);
      }
    };
  }

  return {
    submitAction: unary(
      "SubmitAction",
      (req, who) => coordinator.submit(req.action, who.name),
      (_q, r) => (r.pendingApproval ? "held for approval" : `${r.targeted} agents targeted`),
    ),
    approveAction: unary(
      "ApproveAction",
      (req, who) => coordinator.approve(req.actionId, req.signature, who.name, who.keyId),
      (_q, r) =>
        r.released ? `released to ${r.targeted} agents` : `weight ${r.weight} of ${r.requiredWeight}`,
    ),
    listAgents: unary(
      "ListAgents",
      (req) => ({ agents: coordinator.listAgents(req.target) }),
      (q, r) => `target ${q.target || "(all)"}: ${r.agents.length} agents`,
    ),
    getAction: unary("GetAction", (req) => coordinator.getAction(req.actionId, req.includeResults)),
    listActions: unary("ListActions", (req) => ({
      actions: coordinator.listActions(req.limit, req.pending),
    })),
    previewTarget: unary(
      "PreviewTarget",
      (req) => ({ agents: coordinator.listAgents(req.target || "all") }),
      (q, r) => `target ${q.target || "all"}: ${r.agents.length} agents`,
    ),
    listAudit: unary("ListAudit", (req) => ({ entries: coordinator.listAudit(req.limit, req.actionId) })),
    listAlerts: unary(
      "ListAlerts",
      (req) => ({
        alerts: coordinator.alerts.list(
          coordinator.alertFilter(req.target),
          req.sinceMs,
          Math.min(Math.max(req.limit || 100, 1), 10_000),
        ),
      }),
      (q, r) => `target ${q.target || "(all)"}: ${r.alerts.length} alerts`,
    ),
    openIncident: unary(
      "OpenIncident",
      (req, who) =>
        coordinator.incidents.info(
          coordinator.incidents.notebook.open(req.title, req.severity || "medium", who.name),
        ),
      (_q, r) => `incident ${r.id} opened: ${r.title}`,
    ),
    listIncidents: unary("ListIncidents", (req) => ({
      incidents: coordinator.incidents.notebook
        .list(Math.min(Math.max(req.limit || 50, 1), 1000))
        .map((i) => coordinator.incidents.info(i)),
    })),
    getIncident: unary("GetIncident", (req) => {
      const incident = coordinator.incidents.notebook.get(req.id);
      return {
        incident: coordinator.incidents.info(incident),
        pages: coordinator.incidents.notebook.pages(incident.id),
      };
    }),
    changePhase: unary(
      "ChangePhase",
      (req, who) => coordinator.incidents.notebook.phase(req.id, req.phase, req.note, who.name),
      (q) => `incident ${q.id}: phase ${q.phase}`,
    ),
    addNote: unary(
      "AddNote",
      (req, who) =>
        coordinator.incidents.notebook.note(
          req.id,
          { text: req.text, atMs: req.atMs, signature: req.signature, corrects: req.corrects },
          { name: who.name, keyId: who.keyId },
        ),
      (q, r) => `incident ${q.id}: note, page ${r.seq}`,
    ),
    verifyIncident: unary(
      "VerifyIncident",
      (req) => {
        const r = coordinator.incidents.notebook.verify(req.id);
        return r.ok
          ? { ok: true, pages: r.pages, brokenPage: 0, problem: "" }
          : { ok: false, pages: r.pages, brokenPage: r.seq, problem: r.problem };
      },
      (q, r) => `incident ${q.id}: ${r.ok ? "intact" : `broken at page ${r.brokenPage}`}`,
    ),
    incidentReport: unary("IncidentReport", (req) => ({
      content: coordinator.incidents.report(req.id, req.format),
    })),
    recordCustody: unary(
      "RecordCustody",
      (req, who) =>
        coordinator.incidents.recordCustody(
          req.evidenceId,
          req.event,
          req.to,
          req.note,
          req.sha256,
          who.name,
        ),
      (q) => `evidence ${q.evidenceId}: ${q.event} to ${q.to}`,
    ),
    registerEvidence: unary(
      "RegisterEvidence",
      (req, who) =>
        coordinator.evidence.register(
          { ...req, incidentId: coordinator.incidents.notebook.get(req.incidentId).id },
          who.name,
        ),
      (_q, r) => `evidence ${r.id} registered: ${r.path}`,
    ),
    verifyEvidence: unary("VerifyEvidence", (req) => coordinator.evidence.verifyStored(req.id)),
    notify: unary(
      "Notify",
      (req, who) => coordinator.incidents.notify(req.incidentId, req.to, req.message, who.name),
      (q, r) => `incident ${q.incidentId}: notified ${q.to}${r.webhook ? ` (webhook ${r.webhook})` : ""}`,
    ),
    listEvidence: unary(
      "ListEvidence",
      (req) => ({
        items: coordinator.evidence.list(req.incidentId, Math.min(Math.max(req.limit || 100, 1), 10_000)),
      }),
      (q, r) => `incident ${q.incidentId || "(any)"}: ${r.items.length} items`,
    ),
    getEvidence(call) {
      try {
        const investigator = investigatorOf(call, "GetEvidence").name;
        const { item, file } = coordinator.evidence.get(call.request.id);
        coordinator.audit(investigator, "GetEvidence", {
          actionId: item.actionId,
          agentId: item.agentId,
          message: `evidence ${item.id} (${item.path}, ${item.size} bytes, sha256 ${item.sha256})`,
        });
        call.write({ part: { $case: "item", value: item } });
        const stream = createReadStream(file, { highWaterMark: 256 * 1024 });
        call.on("cancelled", () => stream.destroy());
        stream.on("data", (data) => {
          // Back-pressure: pause reading while gRPC's buffer drains.
          if (!call.write({ part: { $case: "data", value: data as Buffer } })) {
            stream.pause();
            call.once("drain", () => stream.resume());
          }
        });
        stream.on("end", () => call.end());
        stream.on("error", (err) =>
          call.destroy(toServiceError(err, log, "GetEvidence") as grpc.ServiceError),
        );
      } catch (err) {
        call.destroy(toServiceError(err, log, "GetEvidence") as grpc.ServiceError);
      }
    },
    createEnrollmentToken: unary(
      "CreateEnrollmentToken",
      (req, who) =>
        coordinator.enrollment.create(
          { tags: req.tags, uses: req.uses, expiresInMs: Number(req.expiresInMs) },
          who.name,
        ),
      (_q, r) =>
        `enrolment token ${r.token!.id}: ${r.token!.uses} uses, expires ${new Date(r.token!.expiresAtMs).toISOString()}, tags ${JSON.stringify(r.token!.tags)}`,
    ),
    listEnrollmentTokens: unary("ListEnrollmentTokens", (req) => ({
      tokens: coordinator.enrollment.list(Math.min(Math.max(req.limit || 100, 1), 10_000)),
    })),
    revokeEnrollmentToken: unary(
      "RevokeEnrollmentToken",
      (req) => coordinator.enrollment.revoke(req.id),
      (q) => `enrolment token ${q.id} revoked`,
    ),
    listReleases: unary("ListReleases", async () => ({ releases: await coordinator.releases.list() })),
    publishRelease(call, callback) {
      let investigator: string | undefined;
      const fail = (err: unknown) => {
        const p = problemOf(err);
        if (investigator)
          coordinator.audit(investigator, "PublishRelease", { code: p.code, message: p.message });
        call.destroy();
        callback(toServiceError(err, log, "PublishRelease"), null);
      };
      try {
        investigator = investigatorOf(call, "PublishRelease").name;
      } catch (err) {
        fail(err);
        return;
      }
      const parts = call[Symbol.asyncIterator]();
      (async () => {
        const first = await parts.next();
        const header = first.done ? undefined : first.value.part;
        if (header?.$case !== "header") {
          throw new DragnetError(Codes.PARAMS, "a release starts with its header (manifest and signature)");
        }
        async function* data() {
          for (let p = await parts.next(); !p.done; p = await parts.next()) {
            if (p.value.part?.$case !== "data") throw new DragnetError(Codes.PARAMS, "a second header");
            yield p.value.part.value;
          }
        }
        return coordinator.releases.publish(header.value, data());
      })().then((release) => {
        coordinator.audit(investigator!, "PublishRelease", {
          message: `agent ${release.version} for ${release.platform}: ${release.size} bytes, sha256 ${release.sha256}, signed by key ${release.keyId}`,
        });
        callback(null, release);
      }, fail);
    },
    watchAction: serverStream<{ actionId: string }, ActionEvent>(
      "WatchAction",
      (req) => ({ actionId: actionIdOf(req) }),
      (req, send, end) => coordinator.watch(req.actionId, send, end),
    ),
    watchAlerts: serverStream<{ target: string; afterSeq: number }, StoredAlert>(
      "WatchAlerts",
      (req) => ({ message: `target ${req.target || "(all)"}` }),
      (req, send) => coordinator.alerts.follow(coordinator.alertFilter(req.target), req.afterSeq, send),
    ),
  };

  /**
   * A streaming call: authenticated and audited, then `subscribe` pushes
   * messages until it calls `end` or the caller cancels. A caller that does
   * not read is cut off rather than make the coordinator hoard its messages.
   */
  function serverStream<Req, Res>(
    method: string,
    describe: (req: Req) => AuditFields,
    subscribe: (req: Req, send: (m: Res) => void, end: () => void) => () => void,
  ): grpc.handleServerStreamingCall<Req, Res> {
    return (call) => {
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
        const investigator = investigatorOf(call, method).name;
        coordinator.audit(investigator, method, describe(call.request));
        const send = (m: Res) => {
          if (ended) return;
          if (call.writableLength > MAX_WATCH_BUFFER_BYTES) {
            ended = true;
            unsubscribe();
            call.destroy({
              code: grpc.status.RESOURCE_EXHAUSTED,
              details: "the watcher fell too far behind; watch again to resume",
            } as grpc.ServiceError);
            return;
          }
          call.write(m);
        };
        unsubscribe = subscribe(call.request, send, end);
        if (ended) unsubscribe();
      } catch (err) {
        ended = true;
        call.destroy(toServiceError(err, log, method) as grpc.ServiceError);
      }
    };
  }
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
