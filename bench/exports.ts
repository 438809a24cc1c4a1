// npm run bench:exports -- --agents N [--rounds R]
//
// What an export sink costs ingest: the same N-agent sweep as bench:ingest,
// on a coordinator without exports and on one with an HTTP NDJSON sink
// carrying results (to a receiver in a process of its own), R rounds each,
// alternating. Prints ingest time and rate for both (median), the slowdown,
// and the sink's throughput: records/s from the first result to the last one
// accepted by the receiver, and how long after ingest ended the sink caught
// up. The last line printed is one JSON object.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort } from "../common/mod.js";
import { fileAction } from "../test/helpers/actions.js";
import { ROOT } from "../test/helpers/cli.js";
import { eventually, startFleet } from "../test/helpers/fleet.js";
import { startSimulator, timeSweep } from "./harness.js";

const { values } = parseArgs({
  options: { agents: { type: "string", default: "10000" }, rounds: { type: "string", default: "2" } },
});
const n = Number(values.agents);
const rounds = Number(values.rounds);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");

interface Stats {
  records: number;
  unique: number;
  firstMs: number;
  lastMs: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function startReceiver() {
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, "bench", "ndjson-receiver.mjs"), String(port)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
  const stats = async () => (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as Stats;
  return { port, child, stats };
}

/** One fleet, with or without the sink, and its sweeps' figures. */
async function measure(withSink: boolean) {
  const receiver = withSink ? await startReceiver() : undefined;
  const fleet = await startFleet({
    heartbeatIntervalMs: 10_000,
    ...(receiver
      ? {
          exports: [
            {
              name: "bench",
              type: "http",
              format: "ndjson",
              url: `http://127.0.0.1:${receiver.port}/ingest`,
              carries: ["results"],
            },
          ],
        }
      : {}),
  });
  const sim = await startSimulator(fleet, { agents: n, heartbeatIntervalMs: 10_000, answer: true });
  try {
    const body = fileAction({ paths: ["/etc/hostname"] }, { target: 'tags.sim == "true"' });
    const before = receiver ? (await receiver.stats()).unique : 0;
    const started = Date.now();
    const sweep = await timeSweep(fleet, body, [sim.pid!]);
    const ingestEnd = Date.now();
    let sink: Record<string, number> = {};
    if (receiver) {
      const done = await eventually(async () => {
        const s = await receiver.stats();
        return s.unique - before >= n ? s : undefined;
      }, 120_000);
      sink = {
        exported: done.unique - before,
        exportRecordsPerS: Math.round((n / Math.max(1, done.lastMs - started)) * 1000),
        exportCaughtUpAfterIngestMs: Math.max(0, done.lastMs - ingestEnd),
      };
    }
    return { ...sweep, ...sink };
  } finally {
    sim.kill("SIGTERM");
    await fleet.stop();
    receiver?.child.kill("SIGTERM");
  }
}

const plain: Array<Awaited<ReturnType<typeof measure>>> = [];
const exported: Array<Awaited<ReturnType<typeof measure>>> = [];
for (let i = 0; i < rounds; i++) {
  plain.push(await measure(false));
  exported.push(await measure(true));
  console.error(JSON.stringify({ round: i + 1, plain: plain.at(-1), exported: exported.at(-1) }));
}
const key = (r: Record<string, unknown>, k: string) => Number(r[k]);
const allMs = (rs: typeof plain) => median(rs.map((r) => key(r, "all_ms")));
const rate = (rs: typeof plain) => median(rs.map((r) => key(r, "ingest_per_s")));
const slowdown = ((allMs(exported) - allMs(plain)) / allMs(plain)) * 100;
console.log(
  JSON.stringify({
    bench: "exports",
    agents: n,
    rounds,
    ingestAllMs: allMs(plain),
    ingestPerS: rate(plain),
    withSinkAllMs: allMs(exported),
    withSinkIngestPerS: rate(exported),
    slowdownPct: Math.round(slowdown * 10) / 10,
    exportRecordsPerS: median(exported.map((r) => key(r, "exportRecordsPerS"))),
    exportCaughtUpAfterIngestMs: median(exported.map((r) => key(r, "exportCaughtUpAfterIngestMs"))),
  }),
);
