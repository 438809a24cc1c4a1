// npm run bench:ingest -- --agents N
//
// The coordinator alone: N simulated agents (one process, see simulator.ts)
// answer a signed action at once through JetStream; times run from submit to
// each result being stored, and ingest_per_s is results stored per second
// while they arrive. The last line printed is one JSON object.
import { parseArgs } from "node:util";
import { signAction } from "../common/mod.js";
import { fileAction } from "../test/helpers/actions.js";
import { startFleet } from "../test/helpers/fleet.js";
import { percentile, startSimulator } from "./harness.js";

const { values } = parseArgs({ options: { agents: { type: "string", default: "10000" } } });
const n = Number(values.agents);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");

const fleet = await startFleet({ heartbeatIntervalMs: 10_000 });
const sim = await startSimulator(fleet, { agents: n, heartbeatIntervalMs: 10_000, answer: true });
try {
  const body = fileAction({ paths: ["/etc/hostname"] }, { target: 'tags.sim == "true"' });
  const arrivals: number[] = [];
  const submitted = performance.now();
  await fleet.api.submitAction(signAction(body, fleet.alice));
  let allMs = 0;
  await fleet.api.watchAction(body.id, (event) => {
    if (event.event?.$case === "result") arrivals.push(performance.now() - submitted);
    if (event.event?.$case === "done") allMs = performance.now() - submitted;
    return true;
  });
  arrivals.sort((a, b) => a - b);
  const spread = (arrivals.at(-1)! - arrivals[0]!) / 1000;
  console.log(
    JSON.stringify({
      bench: "ingest",
      agents: n,
      answered: arrivals.length,
      first_ms: Math.round(percentile(arrivals, 0)),
      p50_ms: Math.round(percentile(arrivals, 50)),
      p99_ms: Math.round(percentile(arrivals, 99)),
      all_ms: Math.round(allMs),
      ingest_per_s: spread > 0 ? Math.round(arrivals.length / spread) : arrivals.length,
      coordinator_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
    }),
  );
} finally {
  sim.kill("SIGTERM");
  await fleet.stop();
}
