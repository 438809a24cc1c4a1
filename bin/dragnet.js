#!/usr/bin/env node
// The console, from the build (npm run build).
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

// The version alone needs none of the console: answered before the bundle (and gRPC, NATS,
// X.509) is loaded, in the time Node takes to start.
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === "-V" || args[0] === "--version")) {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  process.stdout.write(`${pkg.version}\n`);
  process.exit(0);
}
const bundle = new URL("../dist/dragnet.mjs", import.meta.url);
if (!existsSync(fileURLToPath(bundle))) {
  process.stderr.write("dragnet: the console is not built yet; run `npm run build` (or `npm run up`)\n");
  process.exit(2);
}
await import(bundle.href);
