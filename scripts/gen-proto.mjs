#!/usr/bin/env node
// npm run gen        regenerate proto/gen/ from proto/dragnet/**/*.proto
// npm run gen:check  fail if proto/gen/ is stale (CI), and lint the .proto files
//
// buf (its binary ships in an npm package) compiles the protos and runs the
// ts-proto plugin from node_modules: no download, works offline.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buf = join(root, "node_modules", ".bin", "buf");
const check = process.argv.includes("--check");

function run(args) {
  execFileSync(buf, args, { cwd: root, stdio: "inherit" });
}

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out;
}

run(["lint"]);
if (!check) {
  rmSync(join(root, "proto", "gen"), { recursive: true, force: true });
  run(["generate"]);
  console.log("gen: proto/gen regenerated");
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), "dragnet-gen-"));
try {
  run(["generate", "-o", tmp]);
  const fresh = join(tmp, "proto", "gen");
  const committed = join(root, "proto", "gen");
  const a = files(fresh)
    .map((f) => relative(fresh, f))
    .sort();
  const b = files(committed)
    .map((f) => relative(committed, f))
    .sort();
  const stale = [];
  for (const f of new Set([...a, ...b])) {
    const x = a.includes(f) ? readFileSync(join(fresh, f)) : undefined;
    const y = b.includes(f) ? readFileSync(join(committed, f)) : undefined;
    if (!x || !y || !x.equals(y)) stale.push(f);
  }
  if (stale.length) {
    console.error(`gen:check: generated code is stale (run npm run gen): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log(`gen:check: proto/gen is up to date (${a.length} files)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
