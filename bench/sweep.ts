// npm run bench:sweep -- --agents N [--procs P]
//
// A real nats-server (TLS, JWT users, JetStream), the coordinator (SQLite
// file, gRPC over TLS) in this process, and N real agents spread over P other
// processes — each agent its own NATS connection and credentials, answering a
// real file-module call on a small fixture. One signed action targets all of
// them; times run from submit to each result being stored (a watcher hears of
// a result only once it is committed). The last line printed is one JSON
// object.
//
// The agents' state directories are on tmpfs (/dev/shm): each real endpoint
// syncs its own disk once per command, which on one shared disk would
// measure this machine's fsync queue instead of Dragnet.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_PREFIX } from "../common/mod.js";
import { fileAction } from "../test/helpers/actions.js";
import { ROOT } from "../test/helpers/cli.js";
import { eventually, startFleet, type TestFleet } from "../test/helpers/fleet.js";
import type { SwarmSpec } from "./agent-swarm.js";
import { cpuSeconds, timeSweep } from "./harness.js";

const { values } = parseArgs({
  options: { agents: { type: "string", default: "1000" }, procs: { type: "string" } },
});
const n = Number(values.agents);
if (!Number.isInteger(n) || n < 1) throw new Error("--agents takes a positive number");
const procs = values.procs ? Number(values.procs) : Math.min(8, Math.max(2, Math.ceil(n / 1500)));

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

/** Starts P processes of agents; resolves once each says it is ready. */
async function startSwarms(
  fleet: TestFleet,
  baseDir: string,
  fixtureKeyring: string,
): Promise<ChildProcess[]> {
  const authorityFile = join(baseDir, "authority.json");
  writeFileSync(authorityFile, JSON.stringify(fleet.natsSecurity.authority), { mode: 0o600 });
  const children: ChildProcess[] = [];
  const per = Math.ceil(n / procs);
  await Promise.all(
    Array.from({ length: procs }, (_, p) => {
      const count = Math.max(0, Math.min(per, n - p * per));
      if (count === 0) return Promise.resolve();
      const spec: SwarmSpec = {
        servers: [fleet.nats.url],
        caFile: fleet.caFile,
        keyring: fixtureKeyring,
        authorityFile,
        prefix: DEFAULT_PREFIX,
        baseDir: join(baseDir, `swarm-${p}`),
        from: p * per,
        count,
        heartbeatIntervalMs: 10_000,
      };
      const specFile = join(baseDir, `swarm-${p}.json`);
      writeFileSync(specFile, JSON.stringify(spec));
      // BENCH_PROFILE=DIR writes each agent process's CPU profile there.
      const profile = process.env.BENCH_PROFILE
        ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]
        : [];
      const child = spawn(
        process.execPath,
        [...profile, "--import", "tsx", join(ROOT, "bench", "agent-swarm.ts"), specFile],
        {
          stdio: ["ignore", "pipe", "inherit"],
          env: { ...process.env, UV_THREADPOOL_SIZE: "16" },
        },
      );
      children.push(child);
      return new Promise<void>((resolve, reject) => {
        child.stdout!.on("data", (d) => {
          if (String(d).startsWith("ready")) resolve();
        });
        child.once("exit", (code) => reject(new Error(`agent process ${p} exited with ${code}`)));
      });
    }),
  );
  return children;
}

const fleet = await startFleet({ heartbeatIntervalMs: 10_000 });
const shm = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
const baseDir = mkdtempSync(join(shm, "dragnet-bench-"));
let children: ChildProcess[] = [];
try {
  const fixture = join(fleet.dir, "fixture");
  mkdirSync(join(fixture, "etc"), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(fixture, "etc", `file-${i}.conf`), `setting ${i}\n`);
  const t0 = Date.now();
  children = await startSwarms(fleet, baseDir, fleet.keyringPath);
  await eventually(
    async () => ((await fleet.api.listAgents('tags.bench == "true"')).length === n ? true : undefined),
    600_000,
  );
  log(`${n} agents in ${children.length} processes online in ${Date.now() - t0} ms`);
  // What the connected swarm costs while nothing is asked of it (heartbeats, outbox timers).
  const pids = children.map((c) => c.pid!);
  const idleFrom = cpuSeconds(pids);
  await new Promise((r) => setTimeout(r, 3000));
  const idleCpuPct = Math.round(((cpuSeconds(pids) - idleFrom) / 3) * 100);
  log(`agent processes idle: ${idleCpuPct}% of one core`);

  const body = fileAction(
    { paths: [fixture], names: ["^file-1\\.conf$"] },
    { timeoutMs: 60_000, target: 'tags.bench == "true"' },
  );
  console.log(
    JSON.stringify({
      bench: "sweep",
      agents: n,
      processes: children.length,
      ...(await timeSweep(fleet, body, pids)),
      agents_idle_cpu_pct: idleCpuPct,
    }),
  );
} finally {
  for (const c of children) c.kill("SIGTERM");
  await fleet.stop();
  rmSync(baseDir, { recursive: true, force: true });
}
