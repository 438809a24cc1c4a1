import { Codes, DragnetError } from "../../common/mod.js";
import type { CoordinatorServer, PublishReleaseRequest } from "../../proto/api.js";
import type { Coordinator } from "../coordinator.js";
import { type ApiCalls, clampLimit } from "./calls.js";

// The fleet itself: enrolment tokens for new agents, and signed agent
// releases (published as a stream: a header, then the executable's bytes).

type FleetCalls = Pick<
  CoordinatorServer,
  | "createEnrollmentToken"
  | "listEnrollmentTokens"
  | "revokeEnrollmentToken"
  | "listReleases"
  | "revokeAgent"
  | "publishRelease"
>;

export function fleetCalls(coordinator: Coordinator, calls: ApiCalls): FleetCalls {
  const { enrollment, releases } = coordinator;
  return {
    createEnrollmentToken: calls.unary(
      "CreateEnrollmentToken",
      (req, who) =>
        enrollment.create({ tags: req.tags, uses: req.uses, expiresInMs: Number(req.expiresInMs) }, who.name),
      (_q, r) =>
        `enrolment token ${r.token!.id}: ${r.token!.uses} uses, expires ${new Date(r.token!.expiresAtMs).toISOString()}, tags ${JSON.stringify(r.token!.tags)}`,
    ),
    listEnrollmentTokens: calls.unary("ListEnrollmentTokens", async (req) => ({
      tokens: await enrollment.list(clampLimit(req.limit, 100, 10_000)),
    })),
    revokeEnrollmentToken: calls.unary(
      "RevokeEnrollmentToken",
      (req) => enrollment.revoke(req.id),
      (q) => `enrolment token ${q.id} revoked`,
    ),
    listReleases: calls.unary("ListReleases", async () => ({ releases: await releases.list() })),
    revokeAgent: calls.unary(
      "RevokeAgent",
      (req, who) => coordinator.revokeAgent(req.agentId, req.reason || "no reason given", who.name),
      (q, r) =>
        `agent ${q.agentId} (${r.hostname || "unknown host"})${r.revoked ? "" : " was already"} revoked`,
    ),
    publishRelease: calls.clientStream(
      "PublishRelease",
      async (parts: AsyncIterable<PublishReleaseRequest>) => {
        const it = parts[Symbol.asyncIterator]();
        const first = await it.next();
        const header = first.done ? undefined : first.value.part;
        if (header?.$case !== "header") {
          throw new DragnetError(Codes.PARAMS, "a release starts with its header (manifest and signature)");
        }
        async function* data() {
          for (let p = await it.next(); !p.done; p = await it.next()) {
            if (p.value.part?.$case !== "data") throw new DragnetError(Codes.PARAMS, "a second header");
            yield p.value.part.value;
          }
        }
        return releases.publish(header.value, data());
      },
      (release) => ({
        message: `agent ${release.version} for ${release.platform}: ${release.size} bytes, sha256 ${release.sha256}, signed by key ${release.keyId}`,
      }),
    ),
  };
}
