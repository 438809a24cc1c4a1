import { execFile, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const AGENT_EXE = join(ROOT, "dist", "dragnet-agent");
const CLI = join(ROOT, "bin", "dragnet.js");

export function requireBuild(): void {
  if (!existsSync(AGENT_EXE) || !existsSync(join(ROOT, "dist", "dragnet.mjs"))) {
    throw new Error("dist/ is not built: run `npm run build` (npm test does it first)");
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real console (bin/dragnet.js → dist/dragnet.mjs) as a user would. */
export function dragnet(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 2) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export function ndjson(text: string): Array<Record<string, unknown>> {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * Submits an action with the console home's default key (alice) and approves it as bob, as
 * two investigators would; the approver's result rows. Response modules need both by default.
 */
export async function twoPeople(home: string, args: string[]) {
  const cli = (a: string[]) => dragnet(["--home", home, ...a]);
  const submitted = await cli([...args, "--no-wait"]);
  const id = submitted.stdout.trim().split("\n").at(-1)!;
  if (!submitted.stderr.includes(`action ${id} waits for approval`)) {
    throw new Error(`expected the action to wait for approval:\n${submitted.stderr}`);
  }
  const approved = await cli(["--json", "--key", join(home, "bob.key"), "action", "approve", id, "--yes"]);
  return { code: approved.code, rows: ndjson(approved.stdout), stderr: approved.stderr };
}

/** Why network-namespace tests cannot run here (not root, a program missing), or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  for (const cmd of ["ip", "nft", "ping"]) {
    if (spawnSync("sh", ["-c", `command -v ${cmd}`]).status !== 0)
      return `${cmd} is not installed (.ci/run installs it)`;
  }
  return undefined;
}

/** Whether `fromNs` reaches `to` with one ping within a second. */
export const pingFrom = (fromNs: string, to: string) =>
  spawnSync("ip", ["netns", "exec", fromNs, "ping", "-c", "1", "-W", "1", to]).status === 0;
