import * as grpc from "@grpc/grpc-js";
import {
  API_AUTH_HEADER,
  apiAuthToken,
  type Code,
  Codes,
  DragnetError,
  type InvestigatorKey,
} from "../common/mod.js";
import {
  type ActionDetail,
  type ActionEvent,
  type ActionSummary,
  type AgentInfo,
  type ApproveActionResponse,
  type AuditChainCheck,
  type AuditEntry,
  type CoordinatorClient,
  CoordinatorService,
  type CreateEnrollmentTokenResponse,
  type EnrollmentToken,
  type EvidenceItem,
  type EvidencePart,
  type ExportSinkStatus,
  type Incident,
  type IncidentDetail,
  type JournalPage,
  type NotifyResponse,
  type RegisterEvidenceRequest,
  type Release,
  type RevokeAgentResponse,
  type ScheduleDetail,
  type ScheduleInfo,
  type Signature,
  type SignedAction,
  type SignedScheduleStop,
  type StoredAlert,
  type SubmitActionResponse,
  type VerifyEvidenceResponse,
  type VerifyIncidentResponse,
} from "../proto/api.js";

/**
 * The raw gRPC client of the Coordinator service. Made here, not generated (scripts/gen.mjs drops
 * it): the generated module holds the messages every command imports, and would load gRPC for
 * commands that never call.
 */
export const CoordinatorGrpcClient = grpc.makeGenericClientConstructor(
  CoordinatorService,
  "dragnet.v1.Coordinator",
) as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => CoordinatorClient;

// The console's side of the Coordinator gRPC service: promises instead of
// callbacks, and gRPC errors turned back into DragnetErrors with the
// coordinator's stable code. Every call carries a fresh token signed with the
// investigator's key (common/api-auth.ts): the coordinator knows who asks.

export interface ClientOptions {
  /** The investigator making the calls (authenticates each one). */
  key: InvestigatorKey;
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

/**
 * The API of one coordinator, or of several (`host:port,host:port`: coordinators
 * sharing one store): a call that cannot reach the one in use goes to the next,
 * which is then kept for what follows. Only a call that never reached a
 * coordinator (UNAVAILABLE) is sent again; one that timed out may have run.
 */
export class CoordinatorApi {
  private readonly clients: CoordinatorClient[];
  private readonly addresses: string[];
  private current = 0;
  private readonly deadlineMs: number;
  readonly key: InvestigatorKey;

  constructor(address: string, options: ClientOptions) {
    this.key = options.key;
    const credentials = options.insecure
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(options.ca ?? null);
    this.addresses = address
      .split(",")
      .map((a) => a.trim())
      .filter(Boolean);
    if (this.addresses.length === 0) throw new DragnetError(Codes.CONFIG, "no coordinator address");
    this.clients = this.addresses.map(
      (a) =>
        new CoordinatorGrpcClient(a, credentials, { "grpc.max_receive_message_length": 64 * 1024 * 1024 }),
    );
    this.deadlineMs = options.deadlineMs ?? 15_000;
  }

  /** The coordinator in use now. */
  get address(): string {
    return this.addresses[this.current]!;
  }

  private get client(): CoordinatorClient {
    return this.clients[this.current]!;
  }

  /** Metadata authenticating one call to `path` (a token is good for one call). */
  private auth(path: string): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set(API_AUTH_HEADER, apiAuthToken(this.key, path));
    return md;
  }

  private async call<Req, Res>(
    method: (
      req: Req,
      md: grpc.Metadata,
      opts: Partial<grpc.CallOptions>,
      cb: (e: grpc.ServiceError | null, r: Res) => void,
    ) => unknown,
    path: string,
    req: Req,
  ): Promise<Res> {
    const once = () =>
      new Promise<Res>((resolve, reject) => {
        // `method` is the generated client's prototype method: called on whichever client is in use.
        method.call(
          this.client,
          req,
          this.auth(path),
          { deadline: Date.now() + this.deadlineMs },
          (err, res) => (err ? reject(err) : resolve(res)),
        );
      });
    const tried: string[] = [];
    for (;;) {
      try {
        return await once();
      } catch (err) {
        const e = err as grpc.ServiceError;
        tried.push(`${this.address}: ${e.details}`);
        if (e.code !== grpc.status.UNAVAILABLE || tried.length >= this.clients.length) {
          if (e.code === grpc.status.UNAVAILABLE && tried.length > 1) {
            throw new DragnetError(Codes.UNAVAILABLE, `cannot reach any coordinator (${tried.join("; ")})`);
          }
          throw toDragnetError(e, this.address);
        }
        this.current = (this.current + 1) % this.clients.length;
      }
    }
  }

  createSchedule(schedule: SignedAction): Promise<ScheduleInfo> {
    return this.call(this.client.createSchedule, CoordinatorService.createSchedule.path, { schedule });
  }

  async listSchedules(limit: number): Promise<ScheduleInfo[]> {
    return (await this.call(this.client.listSchedules, CoordinatorService.listSchedules.path, { limit }))
      .schedules;
  }

  getSchedule(id: string): Promise<ScheduleDetail> {
    return this.call(this.client.getSchedule, CoordinatorService.getSchedule.path, { id });
  }

  stopSchedule(stop: SignedScheduleStop): Promise<ScheduleInfo> {
    return this.call(this.client.stopSchedule, CoordinatorService.stopSchedule.path, { stop });
  }

  async exportStatus(): Promise<ExportSinkStatus[]> {
    return (await this.call(this.client.exportStatus, CoordinatorService.exportStatus.path, {})).sinks;
  }

  submitAction(action: SignedAction): Promise<SubmitActionResponse> {
    return this.call(this.client.submitAction, CoordinatorService.submitAction.path, { action });
  }

  approveAction(actionId: string, signature: Signature): Promise<ApproveActionResponse> {
    return this.call(this.client.approveAction, CoordinatorService.approveAction.path, {
      actionId,
      signature,
    });
  }

  async listAgents(target = ""): Promise<AgentInfo[]> {
    return (await this.call(this.client.listAgents, CoordinatorService.listAgents.path, { target })).agents;
  }

  getAction(actionId: string, includeResults: boolean): Promise<ActionDetail> {
    return this.call(this.client.getAction, CoordinatorService.getAction.path, { actionId, includeResults });
  }

  async listActions(limit: number, pending = false): Promise<ActionSummary[]> {
    return (await this.call(this.client.listActions, CoordinatorService.listActions.path, { limit, pending }))
      .actions;
  }

  async previewTarget(target: string): Promise<AgentInfo[]> {
    return (await this.call(this.client.previewTarget, CoordinatorService.previewTarget.path, { target }))
      .agents;
  }

  async listAudit(limit: number, actionId = ""): Promise<AuditEntry[]> {
    return (await this.call(this.client.listAudit, CoordinatorService.listAudit.path, { limit, actionId }))
      .entries;
  }

  async verifyAudit(): Promise<AuditChainCheck[]> {
    return (await this.call(this.client.verifyAudit, CoordinatorService.verifyAudit.path, {})).chains;
  }

  async listAlerts(target: string, sinceMs: number, limit: number): Promise<StoredAlert[]> {
    return (
      await this.call(this.client.listAlerts, CoordinatorService.listAlerts.path, { target, sinceMs, limit })
    ).alerts;
  }

  openIncident(title: string, severity: string): Promise<Incident> {
    return this.call(this.client.openIncident, CoordinatorService.openIncident.path, { title, severity });
  }

  async listIncidents(limit: number): Promise<Incident[]> {
    return (await this.call(this.client.listIncidents, CoordinatorService.listIncidents.path, { limit }))
      .incidents;
  }

  getIncident(id: string): Promise<IncidentDetail> {
    return this.call(this.client.getIncident, CoordinatorService.getIncident.path, { id });
  }

  changePhase(id: string, phase: string, note: string): Promise<JournalPage> {
    return this.call(this.client.changePhase, CoordinatorService.changePhase.path, { id, phase, note });
  }

  addNote(id: string, text: string, atMs: number, signature: string, corrects: number): Promise<JournalPage> {
    return this.call(this.client.addNote, CoordinatorService.addNote.path, {
      id,
      text,
      atMs,
      signature,
      corrects,
    });
  }

  verifyIncident(id: string): Promise<VerifyIncidentResponse> {
    return this.call(this.client.verifyIncident, CoordinatorService.verifyIncident.path, { id });
  }

  async incidentReport(id: string, format: string): Promise<string> {
    return (
      await this.call(this.client.incidentReport, CoordinatorService.incidentReport.path, { id, format })
    ).content;
  }

  recordCustody(
    evidenceId: string,
    event: string,
    to: string,
    note: string,
    sha256: string,
  ): Promise<JournalPage> {
    return this.call(this.client.recordCustody, CoordinatorService.recordCustody.path, {
      evidenceId,
      event,
      to,
      note,
      sha256,
    });
  }

  registerEvidence(req: RegisterEvidenceRequest): Promise<EvidenceItem> {
    return this.call(this.client.registerEvidence, CoordinatorService.registerEvidence.path, req);
  }

  verifyEvidence(id: string): Promise<VerifyEvidenceResponse> {
    return this.call(this.client.verifyEvidence, CoordinatorService.verifyEvidence.path, { id });
  }

  notify(incidentId: string, to: string, message: string): Promise<NotifyResponse> {
    return this.call(this.client.notify, CoordinatorService.notify.path, { incidentId, to, message });
  }

  async listEvidence(incidentId: string, limit: number): Promise<EvidenceItem[]> {
    return (
      await this.call(this.client.listEvidence, CoordinatorService.listEvidence.path, { incidentId, limit })
    ).items;
  }

  createEnrollmentToken(
    tags: Record<string, string>,
    uses: number,
    expiresInMs: number,
  ): Promise<CreateEnrollmentTokenResponse> {
    return this.call(this.client.createEnrollmentToken, CoordinatorService.createEnrollmentToken.path, {
      tags,
      uses,
      expiresInMs,
    });
  }

  async listEnrollmentTokens(limit: number): Promise<EnrollmentToken[]> {
    return (
      await this.call(this.client.listEnrollmentTokens, CoordinatorService.listEnrollmentTokens.path, {
        limit,
      })
    ).tokens;
  }

  revokeEnrollmentToken(id: string): Promise<EnrollmentToken> {
    return this.call(this.client.revokeEnrollmentToken, CoordinatorService.revokeEnrollmentToken.path, {
      id,
    });
  }

  revokeAgent(agentId: string, reason: string): Promise<RevokeAgentResponse> {
    return this.call(this.client.revokeAgent, CoordinatorService.revokeAgent.path, { agentId, reason });
  }

  async listReleases(): Promise<Release[]> {
    return (await this.call(this.client.listReleases, CoordinatorService.listReleases.path, {})).releases;
  }

  /** Sends a release's header, then its bytes from `data`, honouring back-pressure. */
  publishRelease(header: Release, data: AsyncIterable<Buffer>): Promise<Release> {
    return new Promise((resolve, reject) => {
      const call = this.client.publishRelease(
        this.auth(CoordinatorService.publishRelease.path),
        (err, res) => (err ? reject(toDragnetError(err, this.address)) : resolve(res!)),
      );
      (async () => {
        call.write({ part: { $case: "header", value: header } });
        for await (const chunk of data) {
          if (!call.write({ part: { $case: "data", value: chunk } })) {
            await new Promise<void>((r) => call.once("drain", () => r()));
          }
        }
        call.end();
      })().catch((err: unknown) => {
        call.cancel();
        reject(err);
      });
    });
  }

  /** Streams one evidence item: `onItem` with its record first, then `onData` for each piece of its bytes. */
  getEvidence(
    id: string,
    onItem: (item: EvidenceItem) => void,
    onData: (data: Buffer) => void,
  ): Promise<void> {
    return this.follow(
      this.client.getEvidence({ id }, this.auth(CoordinatorService.getEvidence.path)),
      (part: EvidencePart) => {
        if (part.part?.$case === "item") onItem(part.part.value);
        if (part.part?.$case === "data") onData(part.part.value);
        return true;
      },
    );
  }

  /**
   * An action's events until `onEvent` returns false, it completes, or `signal` aborts. When the
   * coordinator followed stops answering and others were given, the watch moves to the next one
   * (which replays the action from the shared store): a result already delivered is not delivered
   * again, and `onMove` is told where the watch went.
   */
  async watchAction(
    actionId: string,
    onEvent: (event: ActionEvent) => boolean | undefined,
    signal?: AbortSignal,
    onMove?: (from: string, to: string, why: string) => void,
  ): Promise<void> {
    const delivered = new Set<string>();
    const deliver = (event: ActionEvent) => {
      if (event.event?.$case === "result") {
        const r = event.event.value;
        const key = `${r.agentId}/${r.status}`;
        if (delivered.has(key)) return undefined;
        delivered.add(key);
      }
      failures = 0;
      return onEvent(event);
    };
    let failures = 0;
    for (;;) {
      const stream = this.client.watchAction({ actionId }, this.auth(CoordinatorService.watchAction.path));
      if (signal?.aborted) stream.cancel();
      else signal?.addEventListener("abort", () => stream.cancel(), { once: true });
      try {
        return await this.follow(stream, deliver);
      } catch (err) {
        // Another coordinator, if there is one that has not failed since the last event.
        if (!DragnetError.is(err, Codes.UNAVAILABLE) || ++failures >= this.clients.length) throw err;
        const from = this.address;
        this.current = (this.current + 1) % this.clients.length;
        onMove?.(from, this.address, (err as Error).message);
      }
    }
  }

  /**
   * Where the alert store stands (the newest alert's sequence number, 0 for none): read before
   * the past is listed, a follower starts from it and misses nothing stored in between.
   */
  async alertsCursor(): Promise<number> {
    return (await this.listAlerts("", 0, 1))[0]?.seq ?? 0;
  }

  /** Alerts after `afterSeq` (0: only new ones, unless `fromCursor`), then each new one, until `onAlert` returns false or `signal` aborts. */
  watchAlerts(
    target: string,
    afterSeq: number,
    onAlert: (alert: StoredAlert) => boolean | undefined,
    signal?: AbortSignal,
    /** afterSeq is a cursor even when 0 (see WatchAlertsRequest.from_cursor). */
    fromCursor = false,
  ): Promise<void> {
    const stream = this.client.watchAlerts(
      { target, afterSeq, fromCursor },
      this.auth(CoordinatorService.watchAlerts.path),
    );
    if (signal?.aborted) stream.cancel();
    else signal?.addEventListener("abort", () => stream.cancel(), { once: true });
    return this.follow(stream, onAlert);
  }

  /** Reads a server stream until it ends (resolves), `onMessage` returns false (cancels it) or it fails (rejects). */
  private follow<T>(
    stream: grpc.ClientReadableStream<T>,
    onMessage: (m: T) => boolean | undefined,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      let stopped = false;
      stream.on("data", (event: T) => {
        if (stopped) return;
        if (onMessage(event) === false) {
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
    for (const c of this.clients) c.close();
  }
}
