import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fileModule } from "../../agent/modules/file/index.js";
import { silentLogger } from "../../common/mod.js";
import { importMigAction } from "../../console/mig-import.js";
import type { FileSearch } from "../../proto/api.js";
import { ROOT } from "../helpers/cli.js";
import { tempDir } from "../helpers/fleet.js";

// MIG v2 action files (test/fixtures/mig-actions, from mozilla/mig) converted
// into Dragnet operations: each criterion lands in its field, nothing is
// dropped, and what Dragnet cannot run is refused by name.

const FIXTURES = join(ROOT, "test", "fixtures", "mig-actions");
const load = (name: string) =>
  JSON.parse(readFileSync(join(FIXTURES, name), "utf8")) as Record<string, unknown>;

function searchesOf(imported: ReturnType<typeof importMigAction>): FileSearch[] {
  return imported.operations.flatMap((op) => (op.module?.$case === "file" ? op.module.value.searches : []));
}

describe("MIG action import", () => {
  it("sshd_backdoor: name, threat, author and target kept; its sha2 digest becomes a SHA-256 criterion", () => {
    const raw = load("sshd_backdoor.json");
    const imported = importMigAction(raw, "sshd_backdoor.json");
    expect(imported.name).toBe(raw.name);
    expect(imported.migTarget).toBe("agents.queueloc like 'linux.%'");
    expect(imported.description).toMatch(/Threat: level alert, family backdoor\./);
    expect(imported.description).toMatch(/Author: Julien Vehent <jvehent@mozilla.com>/);
    expect(imported.description).toMatch(/sucuri\.net/);
    const [s] = searchesOf(imported);
    const original = (
      raw.operations as Array<{ parameters: { searches: Record<string, { sha2: string[] }> } }>
    )[0]!.parameters.searches.lookforbackdooredsshdinentiresbindirectory!;
    expect(s!.label).toBe("lookforbackdooredsshdinentiresbindirectory");
    expect(s!.paths).toEqual(["/usr/sbin/"]);
    expect(s!.sha256).toEqual(original.sha2);
    expect(s!.sha512).toEqual([]);
    fileModule.check({ searches: searchesOf(imported) });
  });

  it("linux-botcode: every named search kept with its sha1", () => {
    const raw = load("linux-botcode.json");
    const original = (
      raw.operations as Array<{ parameters: { searches: Record<string, { sha1: string[] }> } }>
    )[0]!.parameters.searches;
    const searches = searchesOf(importMigAction(raw, "linux-botcode.json"));
    expect(searches.map((s) => [s.label, s.sha1])).toEqual(
      Object.entries(original).map(([k, v]) => [k, v.sha1]),
    );
    fileModule.check({ searches });
  });

  it("glibc check: a content regex, anchored, on one file", () => {
    const [s] = searchesOf(importMigAction(load("glibc_ubuntu_cve-2015-0235.json"), "glibc.json"));
    expect([s!.paths, s!.contents]).toEqual([["/var/lib/dpkg/status"], ["^Version: 2.15-0ubuntu10.10$"]]);
  });

  it("refuses an action with modules Dragnet lacks, naming each, instead of dropping them", () => {
    const raw = load("example_v2.json");
    raw.operations = (raw.operations as Array<{ module: string }>).filter((op) => op.module !== "netstat");
    expect(() => importMigAction(raw, "example_v2.json")).toThrow(
      /agentdestroy \(operation 2: MIG agent management/,
    );
    // Its netstat asks about interface addresses, which Dragnet does not search: both refusals named at once.
    expect(() => importMigAction(load("example_v2.json"), "example_v2.json")).toThrow(
      /operation 2 \(netstat\): netstat localip, localmac, neighborip have no Dragnet equivalent.*agentdestroy \(operation 3/,
    );
  });

  it("MIG netstat: each connected IP, listening port and neighbour MAC becomes one netstat operation", () => {
    const imported = importMigAction(
      {
        name: "c2",
        operations: [
          {
            module: "netstat",
            parameters: {
              connectedip: ["203.0.113.0/24"],
              listeningport: ["4444"],
              neighbormac: ["^30:05:5C"],
            },
          },
        ],
      },
      "c2.json",
    );
    expect(
      imported.operations.map((op) => (op.module?.$case === "netstat" ? op.module.value : undefined)),
    ).toEqual([
      expect.objectContaining({ remoteIp: "203.0.113.0/24", listening: false }),
      expect.objectContaining({ listening: false, localPort: 4444 }),
      expect.objectContaining({ onlyNeighbors: true, neighborMac: "^30:05:5C" }),
    ]);
    expect(imported.notes).toEqual(["netstat: 3 checks become 3 netstat operations"]);
  });

  it("MIG yara: the rules and the file search's -path, -name and -maxdepth carried; other criteria and bad rules refused", () => {
    const rules = 'rule x { strings: $a = "evil" condition: $a }';
    const imported = importMigAction(
      {
        name: "yara",
        operations: [
          {
            module: "yara",
            parameters: { yara: rules, filesearch: "-path /var/www -path /srv -name '\\.php$' -maxdepth 4" },
          },
        ],
      },
      "yara.json",
    );
    expect(
      imported.operations.map((op) => (op.module?.$case === "yara" ? op.module.value : undefined)),
    ).toEqual([
      expect.objectContaining({
        rules: [{ name: "mig.yar", text: rules }],
        paths: ["/var/www", "/srv"],
        name: "\\.php$",
        maxDepth: 3,
      }),
    ]);
    const refused = (parameters: unknown) => () =>
      importMigAction({ name: "y", operations: [{ module: "yara", parameters }] }, "y.json");
    expect(refused({ yara: rules, filesearch: "-path /etc -content evil" })).toThrow(
      /-content has no Dragnet equivalent/,
    );
    expect(refused({ yara: rules })).toThrow(/no "filesearch"/);
    expect(refused({ yara: "rule broken { condition: $nope }", filesearch: "-path /etc" })).toThrow(
      /mig\.yar line 1: unknown pattern/,
    );
  });

  it("example_v2's file searches: md5, names, contents, sizes, mtimes, modes and options all carried", () => {
    const raw = load("example_v2.json");
    raw.operations = (raw.operations as Array<{ module: string }>).filter((op) => op.module === "file");
    const searches = searchesOf(importMigAction(raw, "example_v2.json"));
    const by = Object.fromEntries(searches.map((s) => [s.label, s]));
    expect(Object.keys(by)).toEqual(["s1", "s2", "s3", "s4", "s5", "s6", "s7"]);
    // MIG's maxdepth 2 (root = depth 1) is Dragnet's 1 (root = depth 0).
    expect([by.s1!.md5, by.s1!.names, by.s1!.options!.maxDepth, by.s1!.options!.matchAny]).toEqual([
      ["6a7f0de60c4f43522882f2fb8a69209a"],
      ["fusermount"],
      1,
      false,
    ]);
    expect([by.s2!.contents, by.s2!.paths]).toEqual([["gpgcheck=1"], ["/etc/"]]);
    // MIG's ">1g" includes 1 GiB; Dragnet's > is strict, so the bound moves down a byte.
    expect([by.s6!.sizes, by.s6!.mtimes]).toEqual([[`>${1024 ** 3 - 1}`], ["<90d"]]);
    expect(by.s7!.modes).toEqual(["gt"]);
    // Without "matchall", MIG matches a file when any check hits (s3: either name, or the content).
    expect(Object.fromEntries(searches.map((s) => [s.label, s.options!.matchAny]))).toEqual({
      s1: false,
      s2: false,
      s3: true,
      s4: false,
      s5: true,
      s6: false,
      s7: false,
    });
    fileModule.check({ searches });
  });

  it("MIG's 0 (no limit), remotefs and Go-style modes are converted with a note, never silently", () => {
    const imported = importMigAction(
      {
        name: "limits",
        operations: [
          {
            module: "file",
            parameters: {
              searches: {
                s1: {
                  paths: ["/etc"],
                  sizes: ["<1k"],
                  modes: ["^u"],
                  options: { maxdepth: 0, matchlimit: 0, remotefs: true, matchall: true },
                },
              },
            },
          },
        ],
      },
      "limits.json",
    );
    const [s] = searchesOf(imported);
    expect([s!.options!.maxDepth, s!.options!.matchLimit, s!.sizes]).toEqual([
      undefined,
      undefined,
      ["<1025"],
    ]);
    expect(imported.notes).toEqual([
      'search "s1": modes are matched against ls-style strings (-rwsr-xr-x); MIG used Go\'s, which write setuid, setgid and sticky as leading u, g, t',
      'search "s1": remotefs ignored — Dragnet searches every filesystem under the paths',
      'search "s1": maxdepth 0 means no limit in MIG; Dragnet\'s default maxdepth is used',
      'search "s1": matchlimit 0 means no limit in MIG; Dragnet\'s default matchlimit is used',
    ]);
  });

  it("refuses unknown criteria and options, and digests of no known length", () => {
    const action = (search: unknown) => ({
      name: "x",
      operations: [{ module: "file", parameters: { searches: { s1: search } } }],
    });
    expect(() => importMigAction(action({ paths: ["/"], colour: ["red"] }), "a.json")).toThrow(
      /operation 1 \(file\): search "s1": unknown criterion "colour"/,
    );
    expect(() => importMigAction(action({ paths: ["/"], options: { fast: true } }), "a.json")).toThrow(
      /unknown option "fast"/,
    );
    expect(() => importMigAction(action({ paths: ["/"], sha2: ["abcd"] }), "a.json")).toThrow(
      /sha2 digest "abcd" has 4 characters \(expected 64, 96, 128\)/,
    );
    expect(() => importMigAction({ ...action({ paths: ["/"] }), syntaxversion: 1 }, "a.json")).toThrow(
      /syntax 1; only version 2/,
    );
  });

  it("memory: each pattern an operation of its own, names as the executable's path; what cannot be carried is refused", () => {
    const memory = (search: unknown) =>
      importMigAction(
        { name: "m", operations: [{ module: "memory", parameters: { searches: { s1: search } } }] },
        "m.json",
      );
    const any = memory({ names: ["sshd$"], bytes: ["4d5a9000"], contents: ["AKIA[0-9A-Z]{16}"] });
    expect(any.operations.map((op) => op.module?.$case)).toEqual(["memory", "memory", "process"]);
    const [bytes, regex, byName] = any.operations.map((op) => op.module!.value);
    expect([bytes, regex]).toMatchObject([
      { hex: "4d5a9000", regex: "", processes: { exe: "" } },
      { hex: "", regex: "AKIA[0-9A-Z]{16}", processes: { exe: "" } },
    ]);
    expect(byName).toMatchObject({ exe: "(?:sshd$)" });
    expect(any.notes).toEqual([
      'memory search "s1": without matchall its names match on their own, as a process search',
    ]);

    const all = memory({
      names: ["nginx"],
      contents: ["evil"],
      options: { matchall: true, maxlength: 4096 },
    });
    expect(all.operations).toHaveLength(1);
    expect(all.operations[0]!.module).toMatchObject({
      $case: "memory",
      value: { regex: "evil", maxBytes: 4096, processes: { exe: "(?:nginx)" } },
    });
    expect(all.notes).toEqual(['memory search "s1": maxlength becomes a budget per agent, not per process']);

    expect(() => memory({ libraries: ["libc"] })).toThrow(/libraries have no Dragnet equivalent/);
    expect(() => memory({ contents: ["a"], options: { offset: 4096 } })).toThrow(/offset has no Dragnet/);
    expect(() => memory({ contents: ["a", "b"], options: { matchall: true } })).toThrow(
      /one pattern per operation/,
    );
    expect(() => memory({ contents: ["a"], colour: "red" })).toThrow(/unknown colour/);
  });
});

describe("MIG's file searches as MIG's agents ran them", () => {
  it("maxdepth counts the root as depth 1, as MIG's code does: maxdepth 2 searches the root and one level below", async () => {
    // A file at each depth: root/f0, root/d1/f1, root/d1/d2/f2, root/d1/d2/d3/f3.
    const root = tempDir("dragnet-mig-depth-");
    let dir = root;
    for (let depth = 0; depth < 4; depth++) {
      writeFileSync(join(dir, `f${depth}`), "x");
      dir = join(dir, `d${depth + 1}`);
      mkdirSync(dir);
    }
    const imported = importMigAction(
      {
        name: "depth",
        operations: [
          {
            module: "file",
            parameters: { searches: { s1: { paths: [root], names: ["^f"], options: { maxdepth: 2 } } } },
          },
        ],
      },
      "depth.json",
    );
    const searches = searchesOf(imported);
    const out = await fileModule.run(
      { searches },
      { signal: new AbortController().signal, log: silentLogger, stateDir: root },
    );
    // MIG's pathWalk: the root enters at depth 1, root/d1 at 2, root/d1/d2 at 3 > 2 (not examined).
    expect(out.result.matches.map((m) => m.path.slice(root.length)).sort()).toEqual(["/d1/f1", "/f0"]);
    expect(imported.notes).toEqual([
      expect.stringMatching(/^search "s1": maxdepth 2 becomes 1 — MIG's agents count the root as depth 1/),
    ]);
  });

  it("accepts null where Go writes an unset list, and notes a root that is a link to a directory", () => {
    // As /bin is on Debian 12 (a link to usr/bin): MIG's agents warned and searched nothing there.
    const dir = tempDir("dragnet-mig-link-");
    mkdirSync(join(dir, "usr-bin"));
    symlinkSync("usr-bin", join(dir, "bin"));
    const imported = importMigAction(
      {
        name: "go nulls",
        operations: [
          {
            module: "file",
            parameters: {
              searches: {
                s1: {
                  paths: [join(dir, "bin")],
                  names: ["^sh$"],
                  contents: null,
                  sha256: null,
                  options: { mismatch: null, returnhashes: null, maxdepth: 1, matchall: true },
                },
              },
            },
          },
        ],
      },
      "nulls.json",
    );
    const [s] = searchesOf(imported);
    expect([s!.contents, s!.sha256, s!.options!.mismatch, s!.options!.returnHashes]).toEqual([
      [],
      [],
      [],
      [],
    ]);
    // On Debian 12, /bin is a link to usr/bin: MIG's agents warned and searched nothing there.
    expect(imported.notes).toContainEqual(
      expect.stringMatching(
        /^search "s1": \S+\/bin is a symbolic link to a directory .*MIG's agents did not search such a root/,
      ),
    );
  });
});
