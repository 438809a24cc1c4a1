import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findSshKeys, sshkeyModule } from "../../agent/modules/sshkey/index.js";
import { silentLogger } from "../../common/mod.js";
import { importMigAction } from "../../console/mig-import.js";
import { sshkeyConsole } from "../../console/modules/sshkey.js";
import type { SshKey, SshkeyParams } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// The sshkey module on a tree the test builds: a passwd file, an sshd_config
// whose AuthorizedKeysFile (in an Included drop-in) uses %h and %u, keys made
// by ssh-keygen, authorized_keys with options and comments. Every key's
// bits, fingerprint, type and comment must be what `ssh-keygen -lf` prints
// for its file, and the files found exactly the ones the test planted.

let root: string;
const planted: string[] = []; // authorized_keys files (host paths)
const optionsOf = new Map<string, string[]>(); // fingerprint → the options the test wrote before it
const keygen = new Map<string, string>(); // name → public key line

const write = (rel: string, text: string) => {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  return path;
};
const plant = (rel: string, text: string) => {
  const path = write(rel, text);
  planted.push(path);
  return path;
};
const keyPart = (name: string) => keygen.get(name)!.split(" ").slice(0, 2).join(" ");
const fingerprints = new Map<string, string>();
/** The fingerprint ssh-keygen -lf gives the generated key `name`. */
const fingerprintOf = (name: string) => {
  if (!fingerprints.has(name))
    fingerprints.set(
      name,
      execFileSync("ssh-keygen", ["-lf", join(root, "keys", `${name}.pub`)], { encoding: "utf8" }).split(
        " ",
      )[1]!,
    );
  return fingerprints.get(name)!;
};

const params = (p: Partial<SshkeyParams> = {}): SshkeyParams => ({
  fingerprint: "",
  type: "",
  user: "",
  comment: "",
  noHostKeys: false,
  maxKeys: 0,
  ...p,
});
const find = (p: Partial<SshkeyParams> = {}) => {
  sshkeyModule.check(params(p));
  return findSshKeys(params(p), { root, signal: new AbortController().signal });
};

/** ssh-keygen's names for key types, as it prints them in parentheses. */
const KEYGEN_TYPE: Record<string, string> = {
  "ssh-ed25519": "ED25519",
  "ssh-rsa": "RSA",
  "ssh-dss": "DSA",
  "ecdsa-sha2-nistp256": "ECDSA",
  "ecdsa-sha2-nistp384": "ECDSA",
  "ecdsa-sha2-nistp521": "ECDSA",
};

beforeAll(() => {
  root = tempDir("dragnet-sshkey-");
  const keys: [string, string[]][] = [
    ["ed", ["-t", "ed25519"]],
    ["rsa3072", ["-t", "rsa", "-b", "3072"]],
    ["rsa2048", ["-t", "rsa", "-b", "2048"]],
    ["ec384", ["-t", "ecdsa", "-b", "384"]],
    ["ec256", ["-t", "ecdsa", "-b", "256"]],
    ["ec521", ["-t", "ecdsa", "-b", "521"]],
    ["dsa", ["-t", "dsa"]],
    ["host_ed", ["-t", "ed25519"]],
    ["host_rsa", ["-t", "rsa", "-b", "3072"]],
  ];
  mkdirSync(join(root, "keys"));
  for (const [name, args] of keys) {
    const file = join(root, "keys", name);
    execFileSync("ssh-keygen", ["-q", ...args, "-N", "", "-C", `${name}@made-by-test`, "-f", file]);
    keygen.set(name, readFileSync(`${file}.pub`, "utf8").trim());
  }

  write(
    "etc/passwd",
    [
      "root:x:0:0:root:/root:/bin/bash",
      "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash",
      "bob:x:1001:1001::/home/bob:/bin/sh",
      "carol:x:1002:1002::/srv/carol:/usr/sbin/nologin",
      "dave:x:1003:1003::/home/dave:/bin/bash",
      "",
    ].join("\n"),
  );
  // Debian's layout: the drop-ins come first, and the first AuthorizedKeysFile wins.
  write(
    "etc/ssh/sshd_config",
    [
      "Include /etc/ssh/sshd_config.d/*.conf",
      "AuthorizedKeysFile .ssh/never_read",
      "HostKey /etc/ssh/custom/host_ed25519_key",
      "Match User bob",
      "  AuthorizedKeysFile /etc/ssh/match/%u",
      "",
    ].join("\n"),
  );
  write(
    "etc/ssh/sshd_config.d/10-keys.conf",
    "# keys kept beside the homes too\nAuthorizedKeysFile=.ssh/authorized_keys %h/.ssh/extra_%u /etc/ssh/keys/%u  # trailing comment\n",
  );
  // Not matched by "*.conf": its pattern must never be read.
  write("etc/ssh/sshd_config.d/20-off.conf.disabled", "AuthorizedKeysFile /etc/ssh/disabled/%u\n");
  write("etc/ssh/disabled/alice", `${keyPart("ec521")} must-not-appear\n`);
  write("home/alice/.ssh/never_read", `${keyPart("ec521")} must-not-appear\n`);

  const withOptions = `command="echo a,b",from="10.0.0.0/8,192.168.0.0/16",no-pty,environment="X=\\"y z\\""`;
  optionsOf.set(fingerprintOf("ed"), [
    'command="echo a,b"',
    'from="10.0.0.0/8,192.168.0.0/16"',
    "no-pty",
    'environment="X=\\"y z\\""',
  ]);
  optionsOf.set(fingerprintOf("ec384"), ["restrict", "port-forwarding"]);
  plant(
    "home/alice/.ssh/authorized_keys",
    [
      // ssh-keygen carries a comment over to a later key without one: the comment-less key goes first.
      keyPart("rsa2048"),
      "# a comment line",
      "",
      `${withOptions} ${keyPart("ed")} alice@laptop`,
      `   ${keygen.get("rsa3072")}   `,
      `restrict,port-forwarding ${keyPart("ec384")} deploy@ci`,
      "",
    ].join("\n"),
  );
  plant("home/alice/.ssh/extra_alice", `${keygen.get("dsa")}\n`);
  plant("etc/ssh/keys/bob", `${keyPart("ec256")} bob@desk\n`);
  plant("etc/ssh/match/bob", `${keyPart("ec521")} bob@match-block\n`);
  plant("srv/carol/.ssh/authorized_keys", `${keygen.get("ed")}\n`);
  plant("root/.ssh/authorized_keys", `from="203.0.113.9" ${keygen.get("rsa3072")}\n`);
  // Over 1 MiB: skipped and said so, not read.
  write("home/dave/.ssh/authorized_keys", `${keygen.get("ed")}\n`.repeat(20_000));

  write("etc/ssh/ssh_host_rsa_key.pub", `${keygen.get("host_rsa")}\n`);
  write("etc/ssh/custom/host_ed25519_key.pub", `${keygen.get("host_ed")}\n`);
  // A private key beside them: never opened (only ".pub" files are host keys).
  write("etc/ssh/custom/host_ed25519_key", readFileSync(join(root, "keys", "host_ed"), "utf8"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** ssh-keygen -lf's lines for a file: bits, fingerprint, comment, type name. */
function keygenSays(path: string): string[][] {
  return execFileSync("ssh-keygen", ["-lf", path], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const m = /^(\d+) (SHA256:\S+) (.*) \((\w+)\)$/.exec(line)!;
      const comment = m[3]!.trim();
      return [m[1]!, m[2]!, comment === "no comment" ? "" : comment, m[4]!];
    });
}
const ours = (keys: SshKey[], path: string) =>
  keys
    .filter((k) => k.path === path)
    .map((k) => [String(k.bits), k.fingerprint, k.comment, KEYGEN_TYPE[k.type]]);

describe("sshkey", () => {
  it("finds exactly the planted authorized_keys files: %h, %u, relative paths, an Include, a Match block", async () => {
    const r = await find();
    expect(r.files.sort()).toEqual([...planted].sort());
    expect(r.authorized.some((k) => k.comment === "must-not-appear")).toBe(false);
    // The oversized file is named, not read.
    expect(r.errors.some((e) => e.startsWith(join(root, "home/dave/.ssh/authorized_keys")))).toBe(true);
    expect(r.authorized.some((k) => k.user === "dave")).toBe(false);
  });

  it("gives each key the bits, fingerprint, comment and type ssh-keygen -lf prints for its file", async () => {
    const r = await find();
    for (const path of planted) {
      const theirs = keygenSays(path);
      expect(theirs.length, path).toBeGreaterThan(0);
      expect(ours(r.authorized, path), path).toEqual(theirs);
    }
    for (const [file, name] of [
      ["etc/ssh/ssh_host_rsa_key.pub", "host_rsa"],
      ["etc/ssh/custom/host_ed25519_key.pub", "host_ed"],
    ]) {
      const path = join(root, file!);
      expect(ours(r.hostKeys, path), path).toEqual(keygenSays(path));
      expect(r.hostKeys.find((k) => k.path === path)).toMatchObject({
        user: "",
        comment: `${name}@made-by-test`,
      });
    }
    expect(r.hostKeys).toHaveLength(2);
    // The console's rows mark host keys as such.
    const rows = sshkeyConsole.formatter.rows(r);
    expect(rows.filter((row) => row.kind === "host key").map((row) => row.fingerprint)).toEqual(
      r.hostKeys.map((k) => k.fingerprint),
    );
    expect(rows.filter((row) => row.kind === "authorized")).toHaveLength(r.authorized.length);
    // Every kind generated is there: sizes from the modulus, p and the curve.
    expect(new Set(r.authorized.map((k) => `${k.type}/${k.bits}`))).toEqual(
      new Set([
        "ssh-ed25519/256",
        "ssh-rsa/3072",
        "ssh-rsa/2048",
        "ecdsa-sha2-nistp384/384",
        "ecdsa-sha2-nistp256/256",
        "ecdsa-sha2-nistp521/521",
        "ssh-dss/1024",
      ]),
    );
  });

  it("says whom each file lets in, and the options written before each key (quoted commas kept)", async () => {
    const r = await find();
    const users = (name: string) =>
      r.authorized
        .filter((k) => k.fingerprint === fingerprintOf(name))
        .map((k) => k.user)
        .sort();
    expect(users("ed")).toEqual(["alice", "carol"]);
    expect(users("rsa3072")).toEqual(["alice", "root"]);
    expect(users("ec256")).toEqual(["bob"]);
    expect(users("ec521")).toEqual(["bob"]);
    for (const k of r.authorized) {
      const inAlices = k.path.endsWith("home/alice/.ssh/authorized_keys");
      expect(k.options, `${k.path}:${k.line}`).toEqual(
        inAlices ? (optionsOf.get(k.fingerprint) ?? []) : k.user === "root" ? ['from="203.0.113.9"'] : [],
      );
    }
    const alice = r.authorized.filter((k) => k.path.endsWith("home/alice/.ssh/authorized_keys"));
    expect(alice.map((k) => k.line)).toEqual([1, 4, 5, 6]);
  });

  it("filters by fingerprint, type, user and comment, and bounds the list", async () => {
    const fp = fingerprintOf("ec384");
    const one = await find({ fingerprint: fp });
    expect([...one.authorized, ...one.hostKeys].map((k) => [k.user, k.comment])).toEqual([
      ["alice", "deploy@ci"],
    ]);
    const rsa = await find({ type: "ssh-rsa" });
    expect(rsa.authorized.map((k) => k.bits).sort()).toEqual([2048, 3072, 3072]);
    expect(rsa.hostKeys.map((k) => k.comment)).toEqual(["host_rsa@made-by-test"]);
    const bob = await find({ user: "^bob$" });
    expect(bob.authorized.map((k) => k.comment).sort()).toEqual(["bob@desk", "bob@match-block"]);
    expect(bob.hostKeys).toEqual([]); // host keys let nobody in
    const made = await find({ comment: "made-by-test$", noHostKeys: true });
    expect(made.hostKeys).toEqual([]);
    expect(made.authorized.map((k) => k.comment).sort()).toEqual([
      "dsa@made-by-test",
      "ed@made-by-test",
      "rsa3072@made-by-test",
      "rsa3072@made-by-test",
    ]);
    const all = await find();
    const total = all.authorized.length + all.hostKeys.length;
    const bounded = await find({ maxKeys: 3 });
    expect(bounded.authorized.length + bounded.hostKeys.length).toBe(3);
    expect(bounded.leftOut).toBe(total - 3);
  });

  it("runs as a module over DRAGNET_PACKAGE_ROOT, found when a key is", async () => {
    const before = process.env.DRAGNET_PACKAGE_ROOT;
    process.env.DRAGNET_PACKAGE_ROOT = root;
    try {
      const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: "/nonexistent" };
      const hit = await sshkeyModule.run(params({ fingerprint: fingerprintOf("dsa") }), ctx);
      expect(hit.found).toBe(true);
      expect(hit.result.authorized.map((k) => [k.user, k.path])).toEqual([
        ["alice", join(root, "home/alice/.ssh/extra_alice")],
      ]);
      const miss = await sshkeyModule.run(params({ user: "^nobody-here$" }), ctx);
      expect(miss.found).toBe(false);
    } finally {
      if (before === undefined) delete process.env.DRAGNET_PACKAGE_ROOT;
      else process.env.DRAGNET_PACKAGE_ROOT = before;
    }
  });

  it("refuses malformed filters by name", () => {
    expect(() => sshkeyModule.check(params({ fingerprint: "MD5:aa:bb" }))).toThrow(
      /sshkey: fingerprint .*SHA256/,
    );
    expect(() => sshkeyModule.check(params({ type: "RSA key" }))).toThrow(/sshkey: key type/);
    expect(() => sshkeyModule.check(params({ user: "(" }))).toThrow(/sshkey: user regex/);
    expect(() => sshkeyModule.check(params({ comment: "[" }))).toThrow(/sshkey: comment regex/);
    expect(() => sshkeyModule.check(params({ maxKeys: 100_001 }))).toThrow(/sshkey: max keys/);
  });

  it("imports MIG's sshkey: its defaults become one sshkey operation, paths and maxdepth are refused by name", () => {
    const imported = importMigAction(
      { name: "keys", operations: [{ module: "sshkey", parameters: { paths: null, maxdepth: 0 } }] },
      "keys.json",
    );
    expect(imported.operations).toEqual([{ module: { $case: "sshkey", value: params() } }]);
    expect(imported.notes.join("\n")).toMatch(/private and public key files/);
    expect(() =>
      importMigAction(
        { name: "keys", operations: [{ module: "sshkey", parameters: { paths: ["/opt"], maxdepth: 3 } }] },
        "keys.json",
      ),
    ).toThrow(/sshkey paths, maxdepth have no Dragnet equivalent/);
    expect(() => sshkeyConsole.mig!.convert({ depth: 2 }, [])).toThrow(/sshkey parameter "depth"/);
  });
});
