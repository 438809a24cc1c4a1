// npm run bench:agent [-- --seconds 60 --files 100000 --settle 60 --warm]
//
// The agent executable's own footprint, measured from /proc while a real
// coordinator and nats-server run in this process and beside it:
//   - start to connected: spawn to the coordinator holding its first heartbeat;
//   - idle: RSS (mean and max, sampled each second) and CPU (% of one core)
//     over --seconds with the default 10 s heartbeat and nothing to do;
//   - a hash scan of --files files (bench/.cache/agent-tree, made once): the
//     IOC sweep "is a file with this SHA-256 anywhere under here", every file
//     hashed; peak RSS while it runs and its throughput;
//   - memory --settle seconds after the scan (the search workers stop after a
//     quiet 30 s). RSS and private (anonymous) memory apart: the executable's
//     own pages are shared and reclaimable, private memory is what the host pays.
//   - the executable starts as on a host after boot: its pages dropped from the
//     page cache first (dd iflag=nocache), so only what it touches is read. A
//     freshly built one is all in the cache, and the kernel then maps the
//     cached pages around each it touches (fault-around): ~10 MB more RSS that
//     measures the build, not the agent. --warm leaves the cache as it is.
// The last line printed is one JSON object with those figures.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { MALLOC_ENVIRONMENT } from "../agent/install.js";
import { newId, signAction } from "../common/mod.js";
import { fileAction } from "../test/helpers/actions.js";
import { AGENT_EXE, ROOT, requireBuild } from "../test/helpers/cli.js";
import { startFleet, tempDir } from "../test/helpers/fleet.js";
import { cpuSeconds } from "./harness.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    files: { type: "string", default: "100000" },
    /** How long after the scan memory is measured again (search workers stop after 30 quiet seconds). */
    settle: { type: "string", default: "60" },
    /** Start the executable with its pages left in the page cache (as after a build). */
    warm: { type: "boolean", default: false },
  },
});
const settle = Number(values.settle);
const seconds = Number(values.seconds);
const files = Number(values.files);
if (!(seconds > 0) || !Number.isInteger(files) || files < 1)
  throw new Error("--seconds S --files N, positive");
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A line of /proc/PID/status in MiB (0 once the process is gone). */
function statusMb(pid: number, field: "VmRSS" | "RssAnon" | "RssFile"): number {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}
/** Resident memory: the executable's pages (shared, reclaimable) and the process's own. */
const rssMb = (pid: number) => statusMb(pid, "VmRSS");
/** Private (anonymous) resident memory: what the host pays for this process alone. */
const anonMb = (pid: number) => statusMb(pid, "RssAnon");
/** Resident pages of files (the executable, mostly): shared with the page cache. */
const fileMb = (pid: number) => statusMb(pid, "RssFile");
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** `files` files of 4 KiB in directories of 1,000: made once, then reused. */
function tree(): { dir: string; bytes: number } {
  const dir = join(ROOT, "bench", ".cache", `agent-tree-${files}`);
  const marker = `${dir}.done`;
  const size = 4096;
  if (!existsSync(marker)) {
    log(`writing ${files} files into ${dir} (once)…`);
    const block = Buffer.alloc(size);
    for (let i = 0; i < files; i++) {
      const sub = join(dir, String(Math.floor(i / 1000)).padStart(4, "0"));
      if (i % 1000 === 0) mkdirSync(sub, { recursive: true });
      block.writeUInt32LE(i, 0);
      block.write(`file ${i}\n`, 8);
      writeFileSync(join(sub, `f${i}.dat`), block);
    }
    writeFileSync(marker, "");
  }
  return { dir, bytes: files * size };
}

requireBuild();
const { dir: treeDir, bytes } = tree();
const fleet = await startFleet();
let agent: ChildProcess | undefined;
try {
  const stateDir = join(tempDir("dragnet-bench-agent-"), "state");
  const flags = await fleet.agentExeFlags(stateDir);
  const id = readFileSync(join(stateDir, "agent-id"), "utf8").trim();
  // GNU dd asks the kernel (posix_fadvise DONTNEED) to drop the file's cached pages.
  if (!values.warm) execFileSync("dd", [`if=${AGENT_EXE}`, "iflag=nocache", "count=0", "status=none"]);
  const started = performance.now();
  agent = spawn(AGENT_EXE, ["run", ...flags, "--keyring", fleet.keyringPath, "--log-level", "warn"], {
    stdio: "ignore",
    // As the systemd unit starts it (agent/install.ts): no environment but this.
    env: { ...MALLOC_ENVIRONMENT },
  });
  const pid = agent.pid!;
  while (!fleet.coordinator.registry.get(id)) {
    if (agent.exitCode !== null) throw new Error(`the agent exited (${agent.exitCode})`);
    await sleep(5);
  }
  const startToConnectedMs = Math.round(performance.now() - started);
  log(`agent pid ${pid} connected in ${startToConnectedMs} ms; idle for ${seconds} s…`);

  await sleep(5000); // start-up work (module services, first heartbeats) settles
  const rss: number[] = [];
  const anon: number[] = [];
  const file: number[] = [];
  const cpuBefore = cpuSeconds([pid]);
  const idleStart = performance.now();
  while (performance.now() - idleStart < seconds * 1000) {
    rss.push(rssMb(pid));
    anon.push(anonMb(pid));
    file.push(fileMb(pid));
    await sleep(1000);
  }
  const idleCpuPct = (100 * (cpuSeconds([pid]) - cpuBefore)) / ((performance.now() - idleStart) / 1000);

  log(`hash scan of ${files} files…`);
  const body = fileAction(
    { paths: [treeDir], sha256: ["0".repeat(64)] },
    { id: newId(), timeoutMs: 600_000, expiresAtMs: Date.now() + 600_000 },
  );
  let scanPeak = 0;
  const sampler = setInterval(() => {
    scanPeak = Math.max(scanPeak, rssMb(pid));
  }, 100);
  const scanCpuBefore = cpuSeconds([pid]);
  const scanStart = performance.now();
  await fleet.api.submitAction(signAction(body, fleet.alice));
  let examined = 0;
  const died = new Promise<never>((_, reject) =>
    agent!.once("exit", (code, signal) =>
      reject(new Error(`the agent exited during the scan (${code ?? signal})`)),
    ),
  );
  const watched = fleet.api.watchAction(body.id, (event) => {
    if (event.event?.$case === "result") {
      const op = event.event.value.result?.operations[0];
      if (op?.module?.$case === "file") examined = Number(op.module.value.stats?.filesExamined ?? 0);
    }
    return event.event?.$case !== "done";
  });
  await Promise.race([watched, died]);
  died.catch(() => undefined); // the agent is stopped at the end: that is not a failure
  const scanS = (performance.now() - scanStart) / 1000;
  clearInterval(sampler);
  const scanCpuS = cpuSeconds([pid]) - scanCpuBefore;
  const afterScan = rssMb(pid);
  log(`scan done; memory again in ${settle} s…`);
  await sleep(settle * 1000);
  const settledRss = rssMb(pid);
  const settledAnon = anonMb(pid);

  console.log(
    JSON.stringify({
      bench: "agent",
      start_to_connected_ms: startToConnectedMs,
      idle_seconds: seconds,
      idle_rss_mb: Number(mean(rss).toFixed(1)),
      idle_anon_mb: Number(mean(anon).toFixed(1)),
      idle_file_mb: Number(mean(file).toFixed(1)),
      exe_cached_at_start: values.warm,
      idle_rss_max_mb: Number(Math.max(...rss).toFixed(1)),
      idle_cpu_pct: Number(idleCpuPct.toFixed(3)),
      scan_files: examined,
      scan_s: Number(scanS.toFixed(2)),
      scan_files_per_s: Math.round(examined / scanS),
      scan_mb_per_s: Number((bytes / 1048576 / scanS).toFixed(1)),
      scan_cpu_s: Number(scanCpuS.toFixed(2)),
      scan_rss_peak_mb: Number(scanPeak.toFixed(1)),
      rss_after_scan_mb: Number(afterScan.toFixed(1)),
      settle_s: settle,
      rss_settled_mb: Number(settledRss.toFixed(1)),
      anon_settled_mb: Number(settledAnon.toFixed(1)),
    }),
  );
} finally {
  agent?.kill("SIGTERM");
  await fleet.stop();
}
