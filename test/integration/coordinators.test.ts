import { readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, signAction } from "../../common/mod.js";
import { CoordinatorApi } from "../../console/client.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// Two coordinators against the same NATS, each with its own id and SQLite
// database: both see every agent, each sends its own actions, and every
// result comes back to — and is stored by — the coordinator that sent the
// command, exactly once.

let fleet: TestFleet;
let second: Awaited<ReturnType<TestFleet["addCoordinator"]>>;
const AGENTS = 8;

beforeAll(async () => {
  fleet = await startFleet({ agents: AGENTS });
  second = await fleet.addCoordinator("second");
  for (const api of [fleet.api, second.api]) {
    await eventually(async () => ((await api.listAgents()).length === AGENTS ? true : undefined));
  }
});

afterAll(async () => {
  await second?.stop();
  await fleet?.stop();
});

function storedIn(database: string, actionId: string): number {
  const db = new Database(database, { readonly: true });
  try {
    return (
      db.prepare("SELECT count(*) AS n FROM results WHERE action_id = ?").get(actionId) as { n: number }
    ).n;
  } finally {
    db.close();
  }
}

describe("two coordinators on one fleet", () => {
  it("each gets and stores exactly the results of the commands it sent", async () => {
    const first = { api: fleet.api, database: join(fleet.dir, "coordinator.db") };
    const other = { api: second.api, database: second.database };
    const sweep = async (api: CoordinatorApi) => {
      const body = fileAction({ paths: ["/etc/passwd"], options: { maxDepth: 0, returnHashes: [] } });
      await api.submitAction(signAction(body, fleet.alice));
      return body.id;
    };
    // At the same time, to the same agents.
    const owners = [first, other, first, other];
    const ids = await Promise.all(owners.map((o) => sweep(o.api)));
    for (const [i, id] of ids.entries()) {
      const owner = owners[i]!;
      const { results } = await collectResults(owner.api, id);
      expect(results.map((r) => r.status)).toEqual(Array(AGENTS).fill(CommandStatus.COMMAND_STATUS_SUCCESS));
      expect(storedIn(owner.database, id)).toBe(AGENTS);
      expect(storedIn(owner === first ? other.database : first.database, id)).toBe(0);
    }
    // Nothing was refused for want of knowing a command.
    expect(fleet.coordinator.counters().refused).toBe(0);
    expect(second.coordinator.counters().refused).toBe(0);
  });

  it("reaches the next coordinator of the console's list when one cannot be reached, and says so when none can", async () => {
    const dead = await freePort();
    const ca = readFileSync(fleet.caFile);
    // The second's API port, from the client the helper made for it.
    const api = new CoordinatorApi(`localhost:${dead},${second.api.address}`, { key: fleet.alice, ca });
    try {
      expect((await api.listAgents()).length).toBe(AGENTS);
      expect(api.address).toBe(second.api.address);
      // What follows goes to the one that answered, not through the dead one again.
      expect((await api.listActions(5)).length).toBeGreaterThan(0);
    } finally {
      api.close();
    }
    const none = new CoordinatorApi(`localhost:${dead},localhost:${await freePort()}`, {
      key: fleet.alice,
      ca,
      deadlineMs: 3000,
    });
    try {
      await expect(none.listAgents()).rejects.toThrow(
        /cannot reach any coordinator \(localhost:\d+: .*; localhost:\d+: /,
      );
    } finally {
      none.close();
    }
  });
});
