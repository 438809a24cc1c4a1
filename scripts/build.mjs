#!/usr/bin/env node
// Builds the three executables into dist/:
//   dist/dragnet.mjs              the console (node_modules stay external)
//   dist/dragnet-coordinator.mjs  the coordinator (idem; better-sqlite3 is native)
//   dist/dragnet-agent            the agent: one self-contained executable made with
//                                 Node's single-executable mechanism from a CommonJS
//                                 bundle of everything it imports (no native addons).
//
// DRAGNET_AGENT_OUT=FILE [DRAGNET_AGENT_VERSION=V] builds only the agent
// executable, into FILE, reporting version V: a second build for upgrade tests
// and for trying a release in the lab.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const agentOnly = process.env.DRAGNET_AGENT_OUT;
const dist = agentOnly ? mkdtempSync(join(tmpdir(), "dragnet-build-")) : join(root, "dist");
mkdirSync(dist, { recursive: true });
const started = Date.now();
// The console's chunks of an earlier build (their names are hashes of their contents).
for (const f of readdirSync(dist))
  if (/^console-[A-Z0-9]+\.m?js(\.map)?$|^dragnet\.js(\.map)?$/.test(f)) rmSync(join(dist, f));

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  sourcemap: "linked",
  logLevel: "warning",
  absWorkingDir: root,
};

// The file module's search worker, as code the bundles carry in a string: a
// single executable has no file to start a worker thread from.
const fileWorker = await esbuild.build({
  ...common,
  entryPoints: ["agent/modules/file/walk-worker.ts"],
  format: "cjs",
  sourcemap: false,
  write: false,
});
const withWorker = {
  define: { __DRAGNET_FILE_WORKER__: JSON.stringify(fileWorker.outputFiles[0].text) },
};

// The YARA engine (YARA-X, an N-API addon): carried inside the agent executable
// as a single-executable asset; the agent checks it against this hash before it
// loads it (agent/modules/yara/engine.ts).
const yaraAddon = join(root, "node_modules", "@litko", "yara-x-linux-x64-gnu", "yara-x.linux-x64-gnu.node");
const yaraSha256 = createHash("sha256").update(readFileSync(yaraAddon)).digest("hex");

const agentBundle = esbuild.build({
  ...common,
  ...withWorker,
  // worker-pool.ts reads import.meta.url only when run from source, never in this bundle.
  logOverride: { "empty-import-meta": "silent" },
  entryPoints: ["agent/main.ts"],
  // The bundle's source lives in the agent's heap for as long as it runs: without comments
  // and blanks it is 1.6 MB instead of 2.5 (idle private memory 21-25 -> 15-19 MB). Names are
  // not shortened: stack traces stay readable, and keepNames (which renaming would need) wraps
  // every closure made in a hot loop, which slowed the 100k-file scan measurably.
  minifyWhitespace: true,
  minifySyntax: true,
  outfile: join(dist, "agent.cjs"),
  format: "cjs",
  sourcemap: false,
  define: {
    ...withWorker.define,
    __DRAGNET_VERSION__: JSON.stringify(process.env.DRAGNET_AGENT_VERSION ?? ""),
    __DRAGNET_YARA_SHA256__: JSON.stringify(yaraSha256),
  },
});
await Promise.all(
  agentOnly
    ? [agentBundle]
    : [
        // Split along the console's dynamic imports: a command loads only what it needs.
        esbuild.build({
          ...common,
          entryPoints: { dragnet: "console/main.ts" },
          outdir: "dist",
          splitting: true,
          chunkNames: "console-[hash]",
          outExtension: { ".js": ".mjs" },
          format: "esm",
          packages: "external",
        }),
        esbuild.build({
          ...common,
          entryPoints: ["coordinator/main.ts"],
          outfile: "dist/dragnet-coordinator.mjs",
          format: "esm",
          packages: "external",
        }),
        agentBundle,
        // The web console's page (dragnet ui): one script and one stylesheet, nothing from elsewhere.
        esbuild.build({
          bundle: true,
          absWorkingDir: root,
          logLevel: "warning",
          entryPoints: ["console/ui/page/app.ts"],
          outfile: "dist/ui/app.js",
          platform: "browser",
          format: "esm",
          target: "es2020",
          minify: true,
        }),
      ],
);
if (!agentOnly)
  writeFileSync(join(dist, "ui", "app.css"), readFileSync(join(root, "console", "ui", "page", "app.css")));

// ---- the agent's single executable ------------------------------------------

const agentJs = readFileSync(join(dist, "agent.cjs"));
const exe = agentOnly ? resolve(agentOnly) : join(dist, "dragnet-agent");
const stamp = join(dist, "dragnet-agent.stamp");
const fingerprint = createHash("sha256")
  .update(agentJs)
  .update(process.execPath)
  .update(process.version)
  .digest("hex");
if (existsSync(exe) && existsSync(stamp) && readFileSync(stamp, "utf8") === fingerprint) {
  console.log(`build: dist/ ready in ${Date.now() - started} ms (agent executable unchanged)`);
  process.exit(0);
}

const seaConfig = join(dist, "sea-config.json");
const blob = join(dist, "agent.blob");
writeFileSync(
  seaConfig,
  JSON.stringify({
    main: join(dist, "agent.cjs"),
    output: blob,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    assets: { "yara-x.node": yaraAddon },
  }),
);
execFileSync(process.execPath, ["--experimental-sea-config", seaConfig], { stdio: "pipe" });

// The agent runs as root: it must not take options from NODE_OPTIONS. Node 20
// has no switch for that in single executables (execArgvExtension came later),
// so the copied binary's lookup of the variable is renamed to "=DRAGNET_OFF",
// a name no shell can set. Only the C string literal is patched (the copies of
// the name inside V8's startup snapshot have a length prefix and are left
// alone); exactly one must be found, or the build stops.
const node = readFileSync(process.execPath);
const needle = Buffer.from("\0NODE_OPTIONS\0");
const hits = [];
for (let at = node.indexOf(needle); at !== -1; at = node.indexOf(needle, at + 1)) {
  // V8 snapshot strings are preceded by their length (12) as a 32-bit integer.
  if (node.readUInt32LE(at - 3) !== 12) hits.push(at);
}
if (hits.length !== 1) {
  throw new Error(
    `expected one NODE_OPTIONS lookup in ${process.execPath}, found ${hits.length}: cannot make the agent ignore it`,
  );
}
Buffer.from("\0=DRAGNET_OFF\0").copy(node, hits[0]);
const tmp = `${exe}.tmp`;
rmSync(tmp, { force: true });
writeFileSync(tmp, node, { mode: 0o755 });

const postject = join(root, "node_modules", "postject", "dist", "cli.js");
try {
  execFileSync(
    process.execPath,
    [
      postject,
      tmp,
      "NODE_SEA_BLOB",
      blob,
      "--sentinel-fuse",
      "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2",
    ],
    { stdio: "pipe" },
  );
} catch (err) {
  process.stderr.write(String(err.stderr ?? err));
  throw err;
}
chmodSync(tmp, 0o755);
renameSync(tmp, exe);
writeFileSync(stamp, fingerprint);
rmSync(blob, { force: true });
console.log(`build: dist/ ready in ${Date.now() - started} ms (agent executable rebuilt)`);
if (agentOnly) rmSync(dist, { recursive: true, force: true });
