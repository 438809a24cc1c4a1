// What the benchmarks share: a fleet (NATS, coordinator in this process), a
// simulator process standing in for many agents, and timing one sweep.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { signAction } from "../common/mod.js";
import type { ActionBody } from "../proto/api.js";
import { ROOT } from "../test/helpers/cli.js";
import { eventually, type TestFleet } from "../test/helpers/fleet.js";
import type { SimulatorSpec } from "./simulator.js";

export const INBOX = "_INBOX_SIM";

export async function startSimulator(
  fleet: TestFleet,
  options: { agents: number; heartbeatIntervalMs: number; answer: boolean; withRows?: boolean },
): Promise<ChildProcess> {
  const creds = await fleet.natsSecurity.writeUserCreds(join(fleet.dir, "simulator.creds"), "simulator", {
    pub: ["dragnet.hb.*", "dragnet.ack.*.*", "dragnet.res.*.*.*"],
    sub: ["dragnet.cmd.*", `${INBOX}.>`],
  });
  const spec: SimulatorSpec = {
    servers: [fleet.nats.url],
    caFile: fleet.caFile,
    creds,
    accountSeed: fleet.natsSecurity.authority.accountSeed,
    inboxPrefix: INBOX,
    ...options,
  };
  const specFile = join(fleet.dir, "simulator.json");
  writeFileSync(specFile, JSON.stringify(spec));
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench", "simulator.ts"), specFile], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      if (String(d).includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the simulator exited with ${code}`)));
  });
  await eventually(
    async () =>
      (await fleet.api.listAgents('tags.sim == "true"')).length === options.agents ? true : undefined,
    120_000,
  );
  return child;
}

/** Percentile of sorted numbers. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

const CLOCK_TICKS = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" })) || 100;

/** CPU seconds (user + system) the processes have used so far, from /proc. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone: it counts for nothing from here on.
    }
  }
  return ticks / CLOCK_TICKS;
}

/** Busy and total CPU seconds of the whole machine so far (every core), from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync("/proc/stat", "utf8")
    .split("\n")[0]!
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map(Number) as [number, number, number, number, number, number, number, number];
  const busy = user + nice + system + irq + softirq + steal;
  return { busy: busy / CLOCK_TICKS, total: (busy + idle + iowait) / CLOCK_TICKS };
}

/**
 * Signs and submits `body`, watches it to the end, and returns the figures
 * every sweep benchmark prints: times from submit to each result being
 * stored (a watcher hears of a result only once it is committed), and this
 * process's RSS (the coordinator's: it runs here).
 */
export async function timeSweep(fleet: TestFleet, body: ActionBody, agentPids: number[] = []) {
  const signed = signAction(body, fleet.alice);
  const natsPids = fleet.natsNodes.map((node) => node.pid);
  const before = {
    agents: cpuSeconds(agentPids),
    nats: cpuSeconds(natsPids),
    coordinator: process.cpuUsage(),
  };
  const arrivals: number[] = [];
  const submitted = performance.now();
  await fleet.api.submitAction(signed);
  let allMs = 0;
  await fleet.api.watchAction(body.id, (event) => {
    if (event.event?.$case === "result") arrivals.push(performance.now() - submitted);
    if (event.event?.$case === "done") allMs = performance.now() - submitted;
    return true;
  });
  const coordinatorCpu = process.cpuUsage(before.coordinator);
  // Where the CPU went while the sweep ran (this machine's cores are shared by all three).
  const cpu_s = {
    coordinator: Number(((coordinatorCpu.user + coordinatorCpu.system) / 1e6).toFixed(2)),
    nats: Number((cpuSeconds(natsPids) - before.nats).toFixed(2)),
    agents: Number((cpuSeconds(agentPids) - before.agents).toFixed(2)),
  };
  arrivals.sort((a, b) => a - b);
  const spread = (arrivals.at(-1)! - arrivals[0]!) / 1000;
  return {
    answered: arrivals.length,
    first_ms: Math.round(percentile(arrivals, 0)),
    p50_ms: Math.round(percentile(arrivals, 50)),
    p99_ms: Math.round(percentile(arrivals, 99)),
    all_ms: Math.round(allMs),
    ingest_per_s: spread > 0 ? Math.round(arrivals.length / spread) : arrivals.length,
    coordinator_rss_mb: Math.round(process.memoryUsage().rss / 1048576),
    cpu_s,
  };
}
