import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { requireBuild } from "../helpers/cli.js";
import { tempDir } from "../helpers/fleet.js";

// `dragnet --version` is answered by bin/dragnet.js before the console bundle
// (gRPC, NATS, X.509) is loaded; it must say what the bundle says. Help lists
// every command without loading those packages either.

const ROOT = join(import.meta.dirname, "..", "..");
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const run = (file: string, args: string[]) =>
  execFileSync(process.execPath, [file, ...args], { encoding: "utf8" }).trim();

/** Runs the console with a hook that prints, at exit, the packages it loaded from node_modules. */
function packagesLoaded(args: string[]): { stdout: string; packages: string[] } {
  const dir = tempDir("dragnet-loaded-");
  const hook = join(dir, "hook.mjs");
  writeFileSync(
    hook,
    `import { createRequire } from "node:module";
const cache = createRequire(import.meta.url).cache;
process.on("exit", () => {
  const names = new Set();
  for (const file of Object.keys(cache)) {
    const m = file.match(/node_modules\\/((@[^/]+\\/)?[^/]+)/);
    if (m) names.add(m[1]);
  }
  process.stderr.write("loaded " + JSON.stringify([...names]) + "\\n");
});
`,
  );
  const r = spawnSync(process.execPath, ["--import", hook, join(ROOT, "bin", "dragnet.js"), ...args], {
    encoding: "utf8",
  });
  expect(r.status, r.stderr).toBe(0);
  const line = r.stderr.split("\n").find((l) => l.startsWith("loaded "));
  return { stdout: r.stdout, packages: JSON.parse(line!.slice("loaded ".length)) as string[] };
}

describe("console start", () => {
  it("prints the package's version from bin/dragnet.js and from the bundle alike", () => {
    requireBuild();
    expect(run(join(ROOT, "bin", "dragnet.js"), ["--version"])).toBe(version);
    expect(run(join(ROOT, "bin", "dragnet.js"), ["-V"])).toBe(version);
    expect(run(join(ROOT, "dist", "dragnet.mjs"), ["--version"])).toBe(version);
  });

  it("lists every command with --help without loading gRPC, NATS or X.509", () => {
    requireBuild();
    const help = packagesLoaded(["--help"]);
    // The commands of every kind: the console's own, the modules', the lab's.
    for (const command of ["key", "agents", "file", "isolate", "yara", "action", "schedule", "lab", "ui"])
      expect(help.stdout).toMatch(new RegExp(`^  ${command}\\b`, "m"));
    expect(help.packages).toContain("commander"); // the hook sees what the bundle loads
    expect(help.packages.filter((p) => /^@grpc\/|^@nats-io\/|^@peculiar\//.test(p))).toEqual([]);
    const lab = packagesLoaded(["lab", "--help"]);
    expect(lab.stdout).toMatch(/^\s+up \[options\]/m);
    expect(lab.packages.filter((p) => /^@grpc\/|^@nats-io\/|^@peculiar\//.test(p))).toEqual([]);
  });

  it("answers --version without the bundle, and says to build it for anything else", () => {
    // bin/dragnet.js beside a package.json, with no dist/ at all.
    const root = tempDir("dragnet-start-");
    mkdirSync(join(root, "bin"));
    copyFileSync(join(ROOT, "bin", "dragnet.js"), join(root, "bin", "dragnet.js"));
    writeFileSync(join(root, "package.json"), JSON.stringify({ type: "module", version: "9.8.7" }));
    expect(run(join(root, "bin", "dragnet.js"), ["--version"])).toBe("9.8.7");
    let failed: { status: number; stderr: string } | undefined;
    try {
      run(join(root, "bin", "dragnet.js"), ["agents"]);
    } catch (err) {
      failed = err as { status: number; stderr: string };
    }
    expect([failed?.status, String(failed?.stderr)]).toEqual([2, expect.stringMatching(/not built yet/)]);
  });
});
