import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import { signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// A 3-node NATS cluster on loopback (routes, results stream replicated 3
// times). One node is killed in the middle of a sweep: agents and the
// coordinator move to the others and every result is stored exactly once.

let fleet: TestFleet;
const AGENTS = 12;
const ran = new Map<string, number>();

beforeAll(async () => {
  fleet = await startFleet({ natsCluster: 3, heartbeatIntervalMs: 500 });
  for (let i = 0; i < AGENTS; i++) {
    const hostname = `node-${i}`;
    const slow = defineModule({
      ...fileModule,
      async run(params, ctx) {
        ran.set(hostname, (ran.get(hostname) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 500 + ((i * 131) % 1500)));
        return fileModule.run(params, ctx);
      },
    });
    await fleet.addAgent({ hostname, tags: { group: "cluster" }, modules: [slow], heartbeatIntervalMs: 500 });
  }
  await eventually(async () =>
    (await fleet.api.listAgents('tags.group == "cluster"')).length === AGENTS ? true : undefined,
  );
}, 90_000);

afterAll(async () => {
  await fleet?.stop();
});

describe("the NATS node leading the coordinator's consumer killed mid-sweep", () => {
  it("loses no result, stores none twice, and storage goes on within seconds", async () => {
    const body = fileAction(
      { paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } },
      { target: 'tags.group == "cluster"', timeoutMs: 30_000 },
    );
    await fleet.api.submitAction(signAction(body, fleet.alice));
    await eventually(async () => {
      const { results } = await fleet.api.getAction(body.id, true);
      return results.filter((r) => r.status === CommandStatus.COMMAND_STATUS_RUNNING).length >= AGENTS / 2
        ? true
        : undefined;
    });
    // The node that leads the results stream (replicated on all three) goes.
    const nc = await fleet.connectNats("coordinator");
    const info = await (await jetstreamManager(nc)).streams.info("DRAGNET_RESULTS");
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas).toHaveLength(2);
    // The node leading this coordinator's consumer of it: its pulls were in flight there.
    const consumer = await (await jetstreamManager(nc)).consumers.info("DRAGNET_RESULTS", "coordinator_main");
    const leader = Number(/dragnet-test-(\d)/.exec(consumer.cluster!.leader!)![1]) - 1;
    await nc.close();
    await fleet.natsNodes[leader]!.stop();
    const killedAt = Date.now();
    const { results, done } = await collectResults(fleet.api, body.id);
    // Within seconds: a pull lost with the node is replaced at once (it took 43 s while pulls lived 30 s).
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    expect(results).toHaveLength(AGENTS);
    expect(results.map((r) => r.status)).toEqual(Array(AGENTS).fill(CommandStatus.COMMAND_STATUS_SUCCESS));
    expect(done!.counts).toMatchObject({ targeted: AGENTS, success: AGENTS, found: AGENTS });
    const db = new Database(join(fleet.dir, "coordinator.db"), { readonly: true });
    const stored = db.prepare("SELECT count(*) AS n FROM results WHERE action_id = ?").get(body.id) as {
      n: number;
    };
    db.close();
    expect(stored.n).toBe(AGENTS);
    expect([...ran.values()]).toEqual(Array(AGENTS).fill(1));
  }, 60_000);
});
