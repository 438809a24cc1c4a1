// npm run bench:console [-- --runs N]
//
// How long the console takes to start and answer, as a user runs it: node
// bin/dragnet.js (what npm links as `dragnet`), each command N times in a row
// (median and fastest, in ms). `agents` asks a coordinator this benchmark
// starts (a test fleet with 3 agents). The last line printed is one JSON object.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startFleet } from "../test/helpers/fleet.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs takes a positive number");
const root = join(import.meta.dirname, "..");

function once(args: string[]): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) =>
    execFile(process.execPath, args, { cwd: root }, (err) =>
      err ? reject(err) : resolve(performance.now() - started),
    ),
  );
}

async function timed(args: string[]): Promise<{ median_ms: number; min_ms: number }> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await once(args));
  times.sort((a, b) => a - b);
  return { median_ms: Math.round(times[Math.floor(times.length / 2)]!), min_ms: Math.round(times[0]!) };
}

const fleet = await startFleet({ agents: 3 });
try {
  const home = fleet.consoleHome();
  const figures = {
    bench: "console",
    runs,
    node_empty: await timed(["-e", "0"]),
    version: await timed(["bin/dragnet.js", "--version"]),
    version_bundle: await timed(["dist/dragnet.mjs", "--version"]),
    help: await timed(["bin/dragnet.js", "--help"]),
    agents: await timed(["bin/dragnet.js", "--home", home, "agents"]),
  };
  console.log(JSON.stringify(figures));
} finally {
  await fleet.stop();
}
