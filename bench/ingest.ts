// npm run bench:ingest -- --agents N [--store sqlite|postgres] [--coordinators 1|2]
//
// The coordinator alone: N simulated agents (one process, see simulator.ts)
// answer a signed action at once through JetStream; times run from submit to
// each result being stored, and ingest_per_s is results stored per second
// while they arrive. With --store postgres the coordinator keeps its state in
// a PostgreSQL cluster this benchmark starts; with --coordinators 2 a second
// coordinator shares it, and the fleet is swept in two halves, one submitted
// through each, at once. The last line printed is one JSON object.
import { parseArgs } from "node:util";
import { signAction } from "../common/mod.js";
import type { CoordinatorApi } from "../console/client.js";
import type { ActionBody } from "../proto/api.js";
import { fileAction } from "../test/helpers/actions.js";
import { startFleet } from "../test/helpers/fleet.js";
import { type PostgresCluster, startPostgres } from "../test/helpers/postgres.js";
import { startSimulator, timeSweep } from "./harness.js";

const { values } = parseArgs({
  options: {
    agents: { type: "string", default: "10000" },
    store: { type: "string", default: "sqlite" },
    coordinators: { type: "string", default: "1" },
  },
});
const n = Number(values.agents);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");
if (values.store !== "sqlite" && values.store !== "postgres")
  throw new Error("--store is sqlite or postgres");
const coordinators = Number(values.coordinators);
if (coordinators !== 1 && coordinators !== 2) throw new Error("--coordinators is 1 or 2");
if (coordinators === 2 && values.store !== "postgres")
  throw new Error("--coordinators 2 needs --store postgres");

let cluster: PostgresCluster | undefined;
if (values.store === "postgres") cluster = await startPostgres();
const fleet = await startFleet({
  heartbeatIntervalMs: 10_000,
  ...(cluster ? { postgres: cluster.url } : {}),
});
const second = coordinators === 2 ? await fleet.addCoordinator("b") : undefined;
const sim = await startSimulator(fleet, { agents: n, heartbeatIntervalMs: 10_000, answer: true });
const figures = { bench: "ingest", agents: n, store: values.store, coordinators };
try {
  if (!second) {
    const body = fileAction({ paths: ["/etc/hostname"] }, { target: 'tags.sim == "true"' });
    console.log(JSON.stringify({ ...figures, ...(await timeSweep(fleet, body, [sim.pid!])) }));
  } else {
    // Each coordinator must know every simulated agent before its half is targeted.
    const halves = [0, 1].map((h) =>
      fileAction({ paths: ["/etc/hostname"] }, { target: `tags.sim == "true" and tags.half == "${h}"` }),
    );
    const started = performance.now();
    const arrivals = (
      await Promise.all([sweep(fleet.api, halves[0]!, started), sweep(second.api, halves[1]!, started)])
    ).flat();
    arrivals.sort((x, y) => x - y);
    const spread = (arrivals.at(-1)! - arrivals[0]!) / 1000;
    console.log(
      JSON.stringify({
        ...figures,
        answered: arrivals.length,
        p50_ms: Math.round(arrivals[Math.floor(arrivals.length / 2)]!),
        all_ms: Math.round(arrivals.at(-1)!),
        ingest_per_s: Math.round(arrivals.length / spread),
      }),
    );
  }
} finally {
  sim.kill("SIGTERM");
  await second?.stop();
  await fleet.stop();
  await cluster?.stop();
}

/** Submits one half through one coordinator and returns when each of its results was stored (ms from `t0`). */
async function sweep(api: CoordinatorApi, body: ActionBody, t0: number): Promise<number[]> {
  const arrivals: number[] = [];
  await api.submitAction(signAction(body, fleet.alice));
  await api.watchAction(body.id, (event) => {
    if (event.event?.$case === "result") arrivals.push(performance.now() - t0);
    return true;
  });
  return arrivals;
}
