// npm run bench:idle -- --agents N [--seconds S]
//
// What a quiet fleet costs the coordinator: N simulated agents heartbeating
// every 10 s (spread evenly), measured over S seconds once all are known.
// The last line printed is one JSON object: CPU as a percentage of one core.
import { parseArgs } from "node:util";
import { startFleet } from "../test/helpers/fleet.js";
import { startSimulator } from "./harness.js";

const { values } = parseArgs({
  options: { agents: { type: "string", default: "10000" }, seconds: { type: "string", default: "30" } },
});
const n = Number(values.agents);
const seconds = Number(values.seconds);
if (!Number.isInteger(n) || n < 1 || !(seconds > 0)) throw new Error("--agents N --seconds S, both positive");

const fleet = await startFleet({ heartbeatIntervalMs: 10_000 });
const sim = await startSimulator(fleet, { agents: n, heartbeatIntervalMs: 10_000, answer: false });
try {
  const before = {
    cpu: process.cpuUsage(),
    at: performance.now(),
    hb: fleet.coordinator.counters().heartbeats,
  };
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpu = process.cpuUsage(before.cpu);
  const wallMs = performance.now() - before.at;
  const heartbeats = fleet.coordinator.counters().heartbeats - before.hb;
  console.log(
    JSON.stringify({
      bench: "idle",
      agents: n,
      interval_ms: 10_000,
      seconds: Math.round(wallMs / 1000),
      heartbeats_per_s: Math.round(heartbeats / (wallMs / 1000)),
      coordinator_cpu_pct: Number(((100 * (cpu.user + cpu.system)) / 1000 / wallMs).toFixed(1)),
      coordinator_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
    }),
  );
} finally {
  sim.kill("SIGTERM");
  await fleet.stop();
}
