#!/usr/bin/env node
// The coordinator, from the build (npm run build).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const bundle = new URL("../dist/dragnet-coordinator.mjs", import.meta.url);
if (!existsSync(fileURLToPath(bundle))) {
  process.stderr.write("dragnet-coordinator: not built yet; run `npm run build`\n");
  process.exit(2);
}
await import(bundle.href);
