#!/usr/bin/env node
// npm run up: install what is missing, build, start a lab of 3 agents and run
// a sample sweep, so a new user sees Dragnet answer within a minute.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ensureDependencies, ensureNatsServer, root, run, sha256sumOf, step } from "./setup.mjs";

const home = process.env.DRAGNET_HOME ?? join(homedir(), ".dragnet");
const cli = (args) => [join(root, "bin", "dragnet.js"), ...args];

try {
  ensureDependencies();
  ensureNatsServer();
  step("building");
  run(process.execPath, ["scripts/build.mjs"]);
  if (existsSync(join(home, "lab.json"))) {
    step(`stopping the previous lab in ${home}`);
    spawnSync(process.execPath, cli(["lab", "down"]), { stdio: "inherit" });
  }
  step(`starting a lab of 3 agents in ${home}`);
  run(process.execPath, cli(["lab", "up", "--agents", "3"]));
  const hash = sha256sumOf("/etc/passwd");
  const sweep = ["file", "-t", "all", "--path", "/etc", "--name", "^passwd$", "--sha256", hash];
  step(`sample sweep: dragnet ${sweep.map((a) => (/[\s^$*]/.test(a) ? `'${a}'` : a)).join(" ")}`);
  const r = spawnSync(process.execPath, cli(sweep), { stdio: "inherit" });
  if (r.status !== 0) throw new Error(`the sample sweep exited with ${r.status}`);
  process.stderr.write(`
Dragnet is up. Try:
  npx dragnet agents
  npx dragnet file -t 'tags.env == "prod"' --path /etc --name '^(passwd|shadow)$' --hash sha256
  npx dragnet action list
  npx dragnet lab down
`);
} catch (err) {
  process.stderr.write(`\nnpm run up: ${err.message}\n`);
  process.exit(1);
}
