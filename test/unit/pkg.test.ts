import { execFileSync, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { pkgModule } from "../../agent/modules/pkg/index.js";
import { compareDebian, compareRpm } from "../../agent/modules/pkg/versions.js";
import { silentLogger } from "../../common/mod.js";
import type { PkgParams } from "../../proto/api.js";

// The pkg module against dpkg on this machine: the installed packages equal
// dpkg-query -W's, and Debian version ordering equals dpkg --compare-versions'
// over every installed version and the edge cases of the policy (epochs, "~",
// letters against digits, revisions).

const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: "/nonexistent" };
const run = async (p: Partial<PkgParams>) => {
  const params = { name: "", version: "", manager: "", ...p };
  pkgModule.check(params);
  return (await pkgModule.run(params, ctx)).result;
};
const dpkgSays = (a: string, op: "lt" | "eq" | "gt", b: string) =>
  spawnSync("dpkg", ["--compare-versions", a, op, b]).status === 0;

describe("pkg (dpkg)", () => {
  it("lists exactly the packages dpkg-query -W lists, with version and architecture", async () => {
    const theirs = execFileSync("dpkg-query", ["-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\n"], {
      encoding: "utf8",
    })
      .split("\n")
      .filter(Boolean)
      .sort();
    const r = await run({});
    expect(r.managers).toContain("dpkg");
    const ours = r.packages
      .filter((p) => p.manager === "dpkg")
      .map((p) => `${p.name}\t${p.version}\t${p.architecture}`);
    expect(ours.sort()).toEqual(theirs);
    expect(theirs.length).toBeGreaterThan(100);
    // Install times come from dpkg's file lists: known for installed packages.
    expect(r.packages.filter((p) => p.status === "installed").every((p) => p.installedAtMs > 0)).toBe(true);
  });

  it("orders versions as dpkg --compare-versions does: every installed version and the policy's edge cases", () => {
    const installed = [
      ...new Set(
        execFileSync("dpkg-query", ["-W", "-f", "${Version}\\n"], { encoding: "utf8" })
          .split("\n")
          .filter(Boolean),
      ),
    ].slice(0, 150);
    const edges = [
      "1.0~rc1",
      "1.0",
      "1.0-1",
      "1.0-1~bpo1",
      "1.0+dfsg-1",
      "1:0.9",
      "2:0",
      "0:1.0",
      "1.0a",
      "1.0.1",
      "1.00",
      "1.0-0",
      "1.0~~",
      "1.0~~a",
      "1.0~",
      "3.0.11-1~deb12u1",
      "3.0.11-1~deb12u2",
      "3.0.11-1",
      "3.0.13-1~deb12u1",
      "2.36-9+deb12u4",
      "2.36-9+deb12u10",
      "1.2.3-4ubuntu0.1",
      "10",
      "9",
      "a",
      "b1",
      "1:1.0-1~",
      "7.88.1-10+deb12u5",
    ];
    const versions = [...edges, ...installed];
    let pairs = 0;
    for (let i = 0; i < versions.length; i++) {
      // Each version against the edge cases and its neighbours: a few hundred dpkg calls.
      for (const j of [...edges.keys(), i + 1, i + 7].filter((j) => j < versions.length && j !== i)) {
        const [a, b] = [versions[i]!, versions[j]!];
        const ours = Math.sign(compareDebian(a, b));
        const theirs = dpkgSays(a, "lt", b) ? -1 : dpkgSays(a, "gt", b) ? 1 : 0;
        expect([a, b, ours]).toEqual([a, b, theirs]);
        pairs++;
        if (pairs >= 400) return;
      }
    }
  });

  it("filters by name and by a version comparison in dpkg's ordering", async () => {
    const [one] = (await run({ name: "^dpkg$" })).packages;
    expect(one).toMatchObject({ manager: "dpkg", name: "dpkg", status: "installed" });
    expect((await run({ name: "^dpkg$", version: `<${one!.version}` })).packages).toEqual([]);
    expect((await run({ name: "^dpkg$", version: `=${one!.version}` })).packages.map((p) => p.name)).toEqual([
      "dpkg",
    ]);
    // "~" sorts before the release it precedes: 1.0~rc1 < 1.0.
    expect(
      (await run({ name: "^dpkg$", version: `>${one!.version}~rc1` })).packages.map((p) => p.name),
    ).toEqual(["dpkg"]);
    expect(() => pkgModule.check({ name: "", version: "~1.0", manager: "" })).toThrow(/is not an operator/);
    expect(() => pkgModule.check({ name: "(", version: "", manager: "" })).toThrow(/pkg: name regex/);
  });
});
describe("pkg (rpm ordering)", () => {
  it.skipIf(spawnSync("sh", ["-c", "command -v rpm"]).status !== 0)(
    "orders versions as rpm's own rpm.vercmp does (epochs, ~, ^, letters, releases)",
    () => {
      const versions = [
        "1.0",
        "1.0~rc1",
        "1.0^git1",
        "1.0a",
        "1.0.1",
        "1.00",
        "1.0-1",
        "1.0-2",
        "1.0-1.el9",
        "1.0-10",
        "1:0.9",
        "2:0.1",
        "0:1.0",
        "1.0_1",
        "2.0",
        "10",
        "9",
        "a",
        "b1",
        "1.0-1~bpo",
        "3.0.7-16.el9_2",
        "3.0.7-24.el9",
        "5.14.0-362.8.1.el9_3",
        "5.14.0-70.13.1.el9_0",
        "1.2.3.4",
        "1.2.3",
      ];
      // Both with a release or both without: rpm.vercmp's answer (one without is a
      // dependency-style "any release" in the filter, see README).
      const hasRelease = (v: string) => v.replace(/^\d+:/, "").includes("-");
      const pairs = versions.flatMap((a) =>
        versions.filter((b) => b !== a && hasRelease(a) === hasRelease(b)).map((b) => [a, b] as const),
      );
      const lua = pairs
        .map(([a, b]) => `print(rpm.vercmp(${JSON.stringify(a)},${JSON.stringify(b)}))`)
        .join(" ");
      const theirs = execFileSync("rpm", ["--eval", `%{lua: ${lua.replace(/print\(/g, 'io.write(" ",')}}`], {
        encoding: "utf8",
      })
        .trim()
        .split(/\s+/)
        .map(Number);
      expect(theirs).toHaveLength(pairs.length);
      expect(pairs.map(([a, b]) => [a, b, Math.sign(compareRpm(a, b))])).toEqual(
        pairs.map(([a, b], i) => [a, b, theirs[i]]),
      );
    },
  );
});
