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
  // --maxdepth 0: /etc/passwd itself, not /etc/pam.d/passwd too.
  const sweep = [
    "file",
    "-t",
    "all",
    "--path",
    "/etc",
    "--name",
    "^passwd$",
    "--maxdepth",
    "0",
    "--sha256",
    hash,
  ];
  step(`sample sweep: dragnet ${sweep.map((a) => (/[\s^$*]/.test(a) ? `'${a}'` : a)).join(" ")}`);
  const r = spawnSync(process.execPath, cli(sweep), { stdio: "inherit" });
  if (r.status !== 0) throw new Error(`the sample sweep exited with ${r.status}`);
  // The lab lives in this home: the hints carry it when it is not the default one.
  const env = process.env.DRAGNET_HOME ? `DRAGNET_HOME=${home} ` : "";
  process.stderr.write(`
Dragnet is up (its home: ${home}). Try:
  ${env}npx dragnet agents
  ${env}npx dragnet file -t 'tags.env == "prod"' --path /etc --name '^(passwd|shadow)$' --maxdepth 0 --hash sha256
  ${env}npx dragnet action list
  ${env}npx dragnet lab down
`);
} catch (err) {
  process.stderr.write(`\nnpm run up: ${err.message}\n`);
  process.exit(1);
}
