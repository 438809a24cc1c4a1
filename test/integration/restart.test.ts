import { jetstream } from "@nats-io/jetstream";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// The worst moment to lose a coordinator: its commands were stored but none
// of their later states, the agents answered, and the coordinator had taken
// their results from the stream without acknowledging them. A restarted
// coordinator must wait for those results (handed out again after the ack
// wait) instead of sending the commands a second time.

let fleet: TestFleet;
const AGENTS = 3;

beforeAll(async () => {
  fleet = await startFleet({ agents: AGENTS });
  await eventually(async () => ((await fleet.api.listAgents()).length === AGENTS ? true : undefined));
});

afterAll(async () => {
  await fleet?.stop();
});

describe("a coordinator restarted with results held by its dead predecessor", () => {
  it("sends nothing again and stores each result once when they come back", async () => {
    const body = fileAction({ paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await collectResults(fleet.api, body.id);

    const observer = await fleet.connectNats({ observe: ["dragnet.cmd.*"] });
    const sent: number[] = [];
    observer.subscribe("dragnet.cmd.*", {
      callback: () => {
        sent.push(Date.now());
      },
    });
    await observer.flush();

    await fleet.restartCoordinator(async (database) => {
      // Back to the moment after release: commands stored as pending, no result stored.
      const db = new Database(database);
      const rows = db
        .prepare("SELECT command_id, agent_id, payload FROM results WHERE action_id = ?")
        .all(body.id) as Array<{
        command_id: string;
        agent_id: string;
        payload: Buffer;
      }>;
      db.prepare("DELETE FROM results WHERE action_id = ?").run(body.id);
      db.prepare("UPDATE commands SET status = 1, sent_at = 0, acked_at = 0 WHERE action_id = ?").run(
        body.id,
      );
      db.prepare("UPDATE actions SET completed_at = NULL WHERE id = ?").run(body.id);
      db.close();
      expect(rows).toHaveLength(AGENTS);
      // The agents' answers are in the stream again...
      for (const r of rows) {
        const { nc, sign } = await fleet.stealAgent(r.agent_id);
        const subject = `dragnet.res.${r.agent_id}.main.${r.command_id}`;
        await jetstream(nc).publish(subject, r.payload, { headers: sign(subject, r.payload) });
        await nc.close();
      }
      // ...and the dead coordinator had taken them without acknowledging: they come back after the ack wait.
      const nc = await fleet.connectNats("coordinator");
      const consumer = await jetstream(nc).consumers.get("DRAGNET_RESULTS", "coordinator_main");
      let held = 0;
      for await (const _m of await consumer.fetch({ max_messages: AGENTS, expires: 2000 })) {
        if (++held === AGENTS) break;
      }
      expect(held).toBe(AGENTS);
      await nc.close();
    });
    const restartedAt = Date.now();

    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual(Array(AGENTS).fill(CommandStatus.COMMAND_STATUS_SUCCESS));
    // Well past the first sweeps after the restart: nothing was sent again.
    await new Promise((r) => setTimeout(r, Math.max(0, restartedAt + 2000 - Date.now())));
    expect(sent).toEqual([]);
    const db = new Database(`${fleet.dir}/coordinator.db`, { readonly: true });
    expect(
      (db.prepare("SELECT count(*) AS n FROM results WHERE action_id = ?").get(body.id) as { n: number }).n,
    ).toBe(AGENTS);
    db.close();
  }, 30_000);
});
