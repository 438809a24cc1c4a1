// npm run bench:sweep -- --agents N
//
// A real nats-server, the coordinator (SQLite file, gRPC over TLS) and N real
// agents (each its own NATS connection, running the real file module on a
// small fixture), all in this process; one signed action targeting all of
// them. Times are from submit to each result being stored and seen by a
// watcher. The last line printed is one JSON object.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { signAction } from "../common/mod.js";
import { fileAction } from "../test/helpers/actions.js";
import { eventually, startFleet } from "../test/helpers/fleet.js";

const { values } = parseArgs({ options: { agents: { type: "string", default: "100" } } });
const n = Number(values.agents);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");

const fleet = await startFleet({ heartbeatIntervalMs: 10_000 });
try {
  const fixture = join(fleet.dir, "fixture");
  mkdirSync(join(fixture, "etc"), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(fixture, "etc", `file-${i}.conf`), `setting ${i}\n`);
  const t0 = Date.now();
  for (let i = 0; i < n; i++) await fleet.addAgent({ hostname: `bench-${i}`, heartbeatIntervalMs: 10_000 });
  await eventually(async () => ((await fleet.api.listAgents()).length === n ? true : undefined), 120_000);
  process.stderr.write(`bench: ${n} agents online in ${Date.now() - t0} ms\n`);

  const body = fileAction({ paths: [fixture], names: ["^file-1\\d?\\.conf$"] }, { timeoutMs: 60_000 });
  const signed = signAction(body, fleet.alice);
  const arrivals: number[] = [];
  const submitted = performance.now();
  await fleet.api.submitAction(signed);
  let allMs = 0;
  await fleet.api.watchAction(body.id, (event) => {
    if (event.event?.$case === "result") arrivals.push(performance.now() - submitted);
    if (event.event?.$case === "done") allMs = performance.now() - submitted;
    return true;
  });
  arrivals.sort((a, b) => a - b);
  const pct = (p: number) =>
    arrivals[Math.min(arrivals.length - 1, Math.floor((p / 100) * arrivals.length))] ?? 0;
  const spread = (arrivals.at(-1)! - arrivals[0]!) / 1000;
  console.log(
    JSON.stringify({
      bench: "sweep",
      agents: n,
      answered: arrivals.length,
      first_ms: Math.round(pct(0)),
      p50_ms: Math.round(pct(50)),
      p99_ms: Math.round(pct(99)),
      all_ms: Math.round(allMs),
      ingest_per_s: spread > 0 ? Math.round(arrivals.length / spread) : arrivals.length,
      // Coordinator and agents share this process here; issue 4 separates them.
      process_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
    }),
  );
} finally {
  await fleet.stop();
}
