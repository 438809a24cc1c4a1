// npm run bench:ingest -- --agents N
//
// The coordinator alone: N simulated agents (one process, see simulator.ts)
// answer a signed action at once through JetStream; times run from submit to
// each result being stored, and ingest_per_s is results stored per second
// while they arrive. The last line printed is one JSON object.
import { parseArgs } from "node:util";
import { fileAction } from "../test/helpers/actions.js";
import { startFleet } from "../test/helpers/fleet.js";
import { startSimulator, timeSweep } from "./harness.js";

const { values } = parseArgs({ options: { agents: { type: "string", default: "10000" } } });
const n = Number(values.agents);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");

const fleet = await startFleet({ heartbeatIntervalMs: 10_000 });
const sim = await startSimulator(fleet, { agents: n, heartbeatIntervalMs: 10_000, answer: true });
try {
  const body = fileAction({ paths: ["/etc/hostname"] }, { target: 'tags.sim == "true"' });
  console.log(JSON.stringify({ bench: "ingest", agents: n, ...(await timeSweep(fleet, body, [sim.pid!])) }));
} finally {
  sim.kill("SIGTERM");
  await fleet.stop();
}
