// npm run bench:drift [-- --runs 3]
//
// The drift module's baseline and check, in this process, over a copy of /etc
// and over the file benchmark's tree (bench/.cache/file-tree, made by
// `npm run bench:file`, ~40,000 files), beside `find TREE -type f -exec
// sha256sum {} +` on the same tree. A check where nothing changed reuses the
// hashes of files whose size, mtime and ctime are unchanged; `check --rehash`
// hashes everything again. One JSON line per tree:
// {"bench":"drift","tree":..,"entries":..,"baseline_ms":..,"check_ms":..,"check_rehash_ms":..,"gnu_ms":..,"ratio":..}
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { driftModule } from "../agent/modules/drift/index.js";
import { silentLogger } from "../common/mod.js";
import { DriftParams } from "../proto/mod.js";
import { ROOT } from "../test/helpers/cli.js";
import { medianMs } from "./timing.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "3" } } });
const runs = Number(values.runs);
const state = mkdtempSync(join(tmpdir(), "dragnet-bench-drift-"));
const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: state };

const timed = (fn: () => Promise<unknown>) => medianMs(runs, fn);

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
