// What `npm run up` and `npm test` need before anything else, installed when
// missing: the npm packages (with better-sqlite3's native part) and Debian's
// nats-server. Only Node built-ins are used here: node_modules may not exist yet.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export function step(title) {
  process.stderr.write(`\n== ${title}\n`);
}

export function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...options });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.status ?? r.signal})`);
  }
}

const npm = process.platform === "win32" ? "npm.cmd" : "npm";

export function ensureDependencies() {
  const installed = existsSync(join(root, "node_modules", ".package-lock.json"));
  if (!installed) {
    step("installing npm packages (npm ci)");
    run(npm, ["ci", "--no-audit", "--no-fund"]);
  }
  // better-sqlite3 compiles its native part at install; make sure it did.
  if (!existsSync(join(root, "node_modules", "better-sqlite3", "build", "Release", "better_sqlite3.node"))) {
    step("building better-sqlite3's native module");
    run(npm, ["rebuild", "better-sqlite3"]);
  }
}

export function findNatsServer() {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/bin", "/usr/bin"];
  return dirs.map((d) => join(d, "nats-server")).find((p) => existsSync(p));
}

export function ensureNatsServer() {
  if (findNatsServer()) return;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot || !existsSync("/usr/bin/apt-get")) {
    throw new Error(
      "nats-server is missing: install the Debian package nats-server (sudo apt-get install -y nats-server), then run this again",
    );
  }
  step("installing nats-server (apt-get install -y nats-server)");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const first = spawnSync("apt-get", ["install", "-y", "nats-server"], { stdio: "inherit", env });
  if (first.status !== 0) {
    run("apt-get", ["update"], { env });
    run("apt-get", ["install", "-y", "nats-server"], { env });
  }
  if (!findNatsServer()) throw new Error("nats-server is still missing after apt-get install");
}

export function sha256sumOf(path) {
  return execFileSync(process.execPath, [
    "-e",
    `process.stdout.write(require("crypto").createHash("sha256").update(require("fs").readFileSync(${JSON.stringify(path)})).digest("hex"))`,
  ]).toString();
}
