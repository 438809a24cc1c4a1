// npm run bench:ingest -- --agents N [--store sqlite|postgres] [--coordinators 1|2] [--spawn]
//
// The coordinator alone: N simulated agents (one process, see simulator.ts)
// answer a signed action at once through JetStream; times run from submit to
// each result being stored, and ingest_per_s is results stored per second
// while they arrive. With --store postgres the coordinator keeps its state in
// a PostgreSQL cluster this benchmark starts; with --coordinators 2 a second
// coordinator shares it, and the fleet is swept in two halves, one submitted
// through each, at once. The last line printed is one JSON object.
import type { ChildProcess } from "node:child_process";
import { parseArgs } from "node:util";
import { signAction } from "../common/mod.js";
import type { CoordinatorApi } from "../console/client.js";
import type { ActionBody } from "../proto/api.js";
import { fileAction } from "../test/helpers/actions.js";
import { eventually, startFleet } from "../test/helpers/fleet.js";
import { type PostgresCluster, startPostgres } from "../test/helpers/postgres.js";
import { cpuSeconds, machineCpu, startSimulator, timeSweep } from "./harness.js";

const { values } = parseArgs({
  options: {
    agents: { type: "string", default: "10000" },
    store: { type: "string", default: "sqlite" },
    coordinators: { type: "string", default: "1" },
    /** The coordinator as its own process on SQLite too (as on PostgreSQL), to compare the two stores. */
    spawn: { type: "boolean", default: false },
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
const figures = { bench: "ingest", agents: n, store: values.store, coordinators };
// On PostgreSQL the coordinators run as processes of their own (dist/), one per core at most,
// so that one and two are compared as they are deployed; on SQLite, in this process, as before.
const processes: ChildProcess[] = [];
const apis: CoordinatorApi[] = [fleet.api];
const spawned = cluster !== undefined || values.spawn;
if (spawned) {
  processes.push(await fleet.spawnCoordinator());
  if (coordinators === 2) {
    const b = await fleet.spawnOtherCoordinator("b");
    processes.push(b.child);
    apis.push(b.api);
  }
}
const sim = await startSimulator(fleet, { agents: n, heartbeatIntervalMs: 10_000, answer: true });
try {
  if (!spawned) {
    const body = fileAction({ paths: ["/etc/hostname"] }, { target: 'tags.sim == "true"' });
    console.log(JSON.stringify({ ...figures, ...(await timeSweep(fleet, body, [sim.pid!])) }));
  } else {
    // Every coordinator must know every simulated agent before its part is targeted.
    for (const api of apis) {
      await eventually(
        async () => ((await api.listAgents('tags.sim == "true"')).length === n ? true : undefined),
        60_000,
      );
    }
    // One sweep, or the fleet in two halves, one submitted through each coordinator at once.
    const bodies =
      apis.length === 1
        ? [fileAction({ paths: ["/etc/hostname"] }, { target: 'tags.sim == "true"' })]
        : [0, 1].map((h) =>
            fileAction(
              { paths: ["/etc/hostname"] },
              { target: `tags.sim == "true" and tags.half == "${h}"` },
            ),
          );
    const cpuBefore = cpuSeconds(processes.map((p) => p.pid!));
    const machineBefore = machineCpu();
    const started = performance.now();
    const arrivals = (await Promise.all(bodies.map((body, i) => sweep(apis[i]!, body, started)))).flat();
    arrivals.sort((x, y) => x - y);
    const spread = (arrivals.at(-1)! - arrivals[0]!) / 1000;
    console.log(
      JSON.stringify({
        ...figures,
        answered: arrivals.length,
        first_ms: Math.round(arrivals[0]!),
        p50_ms: Math.round(arrivals[Math.floor(arrivals.length / 2)]!),
        all_ms: Math.round(arrivals.at(-1)!),
        ingest_per_s: Math.round(arrivals.length / spread),
        coordinators_cpu_s: Number((cpuSeconds(processes.map((p) => p.pid!)) - cpuBefore).toFixed(2)),
        // How busy the whole machine was meanwhile (coordinators, NATS, PostgreSQL, the simulator, this process).
        machine_busy_pct: machineBusyPct(machineBefore),
      }),
    );
  }
} finally {
  sim.kill("SIGTERM");
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

/** The share of every core's time the machine spent busy since `before`, in percent. */
function machineBusyPct(before: ReturnType<typeof machineCpu>): number {
  const now = machineCpu();
  return Math.round((100 * (now.busy - before.busy)) / (now.total - before.total));
}
