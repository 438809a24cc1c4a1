import { execFileSync } from "node:child_process";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { AgentStatus, CommandResult, CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// Agents and a coordinator over a real nats-server, the console's gRPC client
// over TLS: heartbeats reach the registry, an action fans out to every agent,
// and every result is stored.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.addAgent({ hostname: "web-1", tags: { env: "prod", role: "web" } });
  await fleet.addAgent({ hostname: "web-2", tags: { env: "prod", role: "web" } });
  await fleet.addAgent({ hostname: "db-1", tags: { env: "staging", role: "db" } });
});

afterAll(async () => {
  await fleet?.stop();
});

describe("a fleet of three agents", () => {
  it("appears in the registry from heartbeats, with host facts and tags", async () => {
    const agents = await eventually(async () => {
      const list = await fleet.api.listAgents();
      return list.length === 3 ? list : undefined;
    });
    expect(agents.map((a) => a.hostname).sort()).toEqual(["db-1", "web-1", "web-2"]);
    for (const a of agents) {
      expect(a.status).toBe(AgentStatus.AGENT_STATUS_ONLINE);
      expect(a.os).toBe(process.platform);
      expect(a.arch).toBe(process.arch);
      expect(a.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(fleet.agents.map((x) => x.id)).toContain(a.id);
    }
    expect(agents.find((a) => a.hostname === "db-1")!.tags).toEqual({ env: "staging", role: "db" });
    const prod = await fleet.api.listAgents('tags.env == "prod"');
    expect(prod.map((a) => a.hostname).sort()).toEqual(["web-1", "web-2"]);
  });

  it("fans an action out to every agent and stores each result once", async () => {
    const expected = execFileSync("sha256sum", ["/etc/passwd"], { encoding: "utf8" }).split(" ")[0]!;
    const body = fileAction({
      names: ["^passwd$"],
      sha256: [expected],
      options: { maxDepth: 0, returnHashes: [] },
    });
    const res = await fleet.api.submitAction(signAction(body, fleet.alice));
    expect(res).toEqual({
      actionId: body.id,
      targeted: 3,
      offline: 0,
      pendingApproval: false,
      weight: 1,
      requiredWeight: 0,
    });

    const { results, done } = await collectResults(fleet.api, body.id);
    expect(results).toHaveLength(3);
    expect(new Set(results.map((r) => r.agentId))).toEqual(new Set(fleet.agents.map((a) => a.id)));
    for (const r of results) {
      expect(r.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
      const file = r.result!.operations[0]!.module;
      expect(file?.$case).toBe("file");
      if (file?.$case !== "file") continue;
      expect(file.value.matches.map((m) => [m.path, m.sha256])).toEqual([["/etc/passwd", expected]]);
    }
    expect(done!.complete).toBe(true);
    expect(done!.counts).toMatchObject({ targeted: 3, success: 3, found: 3, failed: 0, rejected: 0 });

    // What the store holds, read straight from the SQLite file.
    const db = new Database(join(fleet.dir, "coordinator.db"), { readonly: true });
    try {
      const rows = db
        .prepare("SELECT agent_id, found, payload FROM results WHERE action_id = ?")
        .all(body.id) as Array<{
        agent_id: string;
        found: number;
        payload: Buffer;
      }>;
      expect(rows).toHaveLength(3);
      for (const row of rows) {
        expect(row.found).toBe(1);
        expect(CommandResult.decode(row.payload).agentId).toBe(row.agent_id);
      }
      const statuses = db
        .prepare("SELECT status, count(*) AS n FROM commands WHERE action_id = ? GROUP BY status")
        .all(body.id);
      expect(statuses).toEqual([{ status: CommandStatus.COMMAND_STATUS_SUCCESS, n: 3 }]);
      const action = db.prepare("SELECT completed_at FROM actions WHERE id = ?").get(body.id) as {
        completed_at: number;
      };
      expect(action.completed_at).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  });

  it("targets only the agents the expression selects", async () => {
    const body = fileAction(
      { names: ["^hostname$"], options: { maxDepth: 0, returnHashes: [] } },
      { target: 'tags.role == "web" and hostname ~ "-2$"' },
    );
    const res = await fleet.api.submitAction(signAction(body, fleet.alice));
    expect(res.targeted).toBe(1);
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.hostname)).toEqual(["web-2"]);
  });

  it("answers GetAction by unique prefix and lists actions newest first", async () => {
    const body = fileAction({ names: ["^hosts$"], options: { maxDepth: 0, returnHashes: [] } });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await collectResults(fleet.api, body.id);
    const detail = await fleet.api.getAction(body.id.slice(0, 20), true);
    expect(detail.summary!.id).toBe(body.id);
    expect(detail.results).toHaveLength(3);
    expect(detail.summary!.signerKeyIds).toEqual([fleet.alice.keyId]);
    expect(detail.summary!.signerNames).toEqual(["alice"]);
    const list = await fleet.api.listActions(10);
    expect(list[0]!.id).toBe(body.id);
    expect(list.length).toBeGreaterThanOrEqual(3);
  });

  it("a watcher that joins after completion still sees every result and the end", async () => {
    const body = fileAction({ names: ["^group$"], options: { maxDepth: 0, returnHashes: [] } });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await collectResults(fleet.api, body.id);
    const again = await collectResults(fleet.api, body.id);
    expect(again.results).toHaveLength(3);
    expect(again.done!.counts!.success).toBe(3);
  });
});
