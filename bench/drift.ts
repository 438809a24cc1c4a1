// npm run bench:drift [-- --runs 3]
//
// The drift module's baseline and check, in this process, over a copy of /etc
// and over the file benchmark's tree (bench/.cache/file-tree, made by
// `npm run bench:file`, ~40,000 files), beside `find TREE -type f -exec
// sha256sum {} +` on the same tree. A check where nothing changed reuses the
// hashes of files whose size, mtime and ctime are unchanged; `check --rehash`
// hashes everything again. A live watch on the same tree: how long installing
// it takes, how many directories inotify watches, and the median time from a
// file written to its alert. One JSON line per tree:
// {"bench":"drift","tree":..,"entries":..,"baseline_ms":..,"check_ms":..,"check_rehash_ms":..,"gnu_ms":..,"ratio":..,
//  "watch_start_ms":..,"watch_dirs":..,"alert_ms":..}
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { driftModule } from "../agent/modules/drift/index.js";
import { DriftWatches } from "../agent/modules/drift/watch.js";
import { silentLogger } from "../common/mod.js";
import { type Alert, DriftParams } from "../proto/api.js";
import { ROOT } from "../test/helpers/cli.js";
import { standaloneHost } from "../test/helpers/module-host.js";
import { medianMs } from "./timing.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const runs = Number(values.runs);
const state = mkdtempSync(join(tmpdir(), "dragnet-bench-drift-"));
const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: state };

const timed = (fn: () => Promise<unknown>) => medianMs(runs, fn);

/** Installs a watch on the tree, then times file writes (in a scratch directory under it) to their alerts. */
async function benchWatch(label: string, tree: string) {
  const alerts: Alert[] = [];
  const watches = new DriftWatches(standaloneHost(state, (a) => alerts.push(a), "bench", "bench"));
  await watches.start();
  const scratch = join(tree, ".dragnet-bench-watch");
  mkdirSync(scratch, { recursive: true });
  try {
    const t0 = performance.now();
    const params = DriftParams.fromPartial({
      mode: "watch_start",
      name: label,
      paths: [tree],
      maxEntries: 2_000_000,
    });
    const started = await driftModule.run(params, { ...ctx, service: watches });
    const watchStartMs = performance.now() - t0;
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const file = join(scratch, `f${i}`);
      const before = alerts.length;
      const t = performance.now();
      writeFileSync(file, `edit ${i}\n`);
      while (!alerts.slice(before).some((a) => a.changes.some((c) => c.path === file))) {
        if (performance.now() - t > 10_000) throw new Error(`${label}: no alert for ${file} within 10 s`);
        await new Promise((r) => setTimeout(r, 2));
      }
      latencies.push(performance.now() - t);
    }
    latencies.sort((a, b) => a - b);
    return {
      watch_start_ms: Math.round(watchStartMs),
      watch_dirs: started.result.watches[0]?.directoriesNotified ?? 0,
      alert_ms: Math.round(latencies[Math.floor(latencies.length / 2)]!),
    };
  } finally {
    await watches.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function bench(label: string, tree: string) {
  const baseline = DriftParams.fromPartial({
    mode: "baseline",
    name: label,
    paths: [tree],
    maxEntries: 2_000_000,
  });
  const check = DriftParams.fromPartial({ mode: "check", name: label });
  const rehash = DriftParams.fromPartial({ mode: "check", name: label, rehash: true });
  spawnSync("sh", ["-c", `find '${tree}' -type f -exec cat {} + > /dev/null`]); // warm the cache
  const baselineMs = await timed(() => driftModule.run(baseline, ctx));
  const checked = await driftModule.run(check, ctx);
  if (checked.result.changes.length > 0) throw new Error(`${label}: the tree changed during the bench`);
  const checkMs = await timed(() => driftModule.run(check, ctx));
  const rehashMs = await timed(() => driftModule.run(rehash, ctx));
  const gnuMs = await timed(async () => {
    const r = spawnSync("sh", ["-c", `find '${tree}' -type f -exec sha256sum {} + > /dev/null`]);
    if (r.status !== 0 && r.status !== 1) throw new Error(`find | sha256sum exited with ${r.status}`);
  });
  const watch = await benchWatch(label, tree);
  console.log(
    JSON.stringify({
      bench: "drift",
      tree: label,
      entries: checked.result.entries,
      hashes_reused: checked.result.hashesReused,
      baseline_ms: Math.round(baselineMs),
      check_ms: Math.round(checkMs),
      check_rehash_ms: Math.round(rehashMs),
      gnu_ms: Math.round(gnuMs),
      ratio: Number((baselineMs / gnuMs).toFixed(2)),
      ...watch,
    }),
  );
}

const etc = join(mkdtempSync(join(tmpdir(), "dragnet-bench-etc-")), "etc");
cpSync("/etc", etc, { recursive: true, verbatimSymlinks: true });
try {
  await bench("etc", etc);
  const big = join(ROOT, "bench", ".cache", "file-tree");
  if (existsSync(big)) await bench("file-tree", big);
  else
    process.stderr.write("bench: no bench/.cache/file-tree; run npm run bench:file first for the big tree\n");
} finally {
  rmSync(etc, { recursive: true, force: true });
  rmSync(state, { recursive: true, force: true });
}
