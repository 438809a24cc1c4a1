#!/usr/bin/env node
// npm test: the whole suite, with its own setup. Stops at the first failure.
import { ensureDependencies, ensureNatsServer, run, step } from "./setup.mjs";

const started = Date.now();
try {
  ensureDependencies();
  ensureNatsServer();
  step("generated code is current (npm run gen:check)");
  run(process.execPath, ["scripts/gen.mjs", "--check"]);
  step("types (tsc --noEmit)");
  run(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json", "--noEmit"]);
  // The web console's page, with the browser's types.
  run(process.execPath, [
    "node_modules/typescript/bin/tsc",
    "-p",
    "console/ui/page/tsconfig.json",
    "--noEmit",
  ]);
  step("lint and format (biome check)");
  run(process.execPath, ["node_modules/@biomejs/biome/bin/biome", "check", "."]);
  step("build (dist/: console, coordinator, agent executable)");
  run(process.execPath, ["scripts/build.mjs"]);
  step("tests (vitest: unit, integration with nats-server, end-to-end with the agent executable)");
  run(process.execPath, ["node_modules/vitest/vitest.mjs", "run", ...process.argv.slice(2)]);
  process.stderr.write(`\nnpm test: all green in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
} catch (err) {
  process.stderr.write(`\nnpm test: ${err.message}\n`);
  process.exit(1);
}
