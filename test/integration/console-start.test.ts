import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { requireBuild } from "../helpers/cli.js";
import { tempDir } from "../helpers/fleet.js";

// `dragnet --version` is answered by bin/dragnet.js before the console bundle
// (gRPC, NATS, X.509) is loaded; it must say what the bundle says.

const ROOT = join(import.meta.dirname, "..", "..");
const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
const run = (file: string, args: string[]) =>
  execFileSync(process.execPath, [file, ...args], { encoding: "utf8" }).trim();

describe("console start", () => {
  it("prints the package's version from bin/dragnet.js and from the bundle alike", () => {
    requireBuild();
    expect(run(join(ROOT, "bin", "dragnet.js"), ["--version"])).toBe(version);
    expect(run(join(ROOT, "bin", "dragnet.js"), ["-V"])).toBe(version);
    expect(run(join(ROOT, "dist", "dragnet.mjs"), ["--version"])).toBe(version);
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
