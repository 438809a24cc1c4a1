#!/usr/bin/env node
// The console, from the build (npm run build).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const bundle = new URL("../dist/dragnet.mjs", import.meta.url);
if (!existsSync(fileURLToPath(bundle))) {
  process.stderr.write("dragnet: the console is not built yet; run `npm run build` (or `npm run up`)\n");
  process.exit(2);
}
await import(bundle.href);
