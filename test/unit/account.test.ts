import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accountModule, listAccounts } from "../../agent/modules/account/index.js";
import { silentLogger } from "../../common/mod.js";
import { accountConsole } from "../../console/modules/account.js";
import { type AccountParams, AccountResult, type Login } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// The account module against the system's own tools: users and groups as
// getent lists them on this machine, supplementary groups as id -Gn gives
// them; on a tree the test builds, password states as the shadow file was
// written to make them (and no trace of its hashes in the result), sudoers
// rules as sudo would read them (includedir skipping "~" and dotted files),
// wtmp as `last -F` tells it and lastlog as `lastlog` does.

let root: string;
const DAY = 86_400_000;
const NOW = Date.UTC(2024, 5, 15, 12); // the day password expiry is weighed on
const TODAY = Math.floor(NOW / DAY);
const hashes: string[] = [];

const write = (rel: string, data: string | Buffer) => {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  return path;
};
const params = (p: Partial<AccountParams> = {}): AccountParams => ({
  user: "",
  uid0: false,
  passwordStates: [],
  usersOnly: false,
  maxLogins: 0,
  ...p,
});
const signal = new AbortController().signal;
const list = (p: Partial<AccountParams> = {}, at = root) => {
  accountModule.check(params(p));
  return listAccounts(params(p), { root: at, signal, nowMs: NOW });
};
/** A crypt(3)-looking hash with a fresh salt and digest, remembered so the result can be searched for it. */
const hash = (prefix: string) => {
  const salt = randomBytes(12).toString("base64url").replace(/[-_]/g, "a");
  const digest = randomBytes(48).toString("base64url").replace(/[-_]/g, "b");
  hashes.push(salt, digest);
  return `${prefix}${salt}$${digest}`;
};

/** Each user's password field in shadow (undefined: no shadow line), and the state the line is written to give. */
const SHADOW: Array<[user: string, passwd: string, shadow: string | undefined, expected: string]> = [];

beforeAll(() => {
  root = tempDir("dragnet-account-");
  const recent = String(TODAY - 10);
  const set = (user: string, line: string, expected: string, passwd = "x") =>
    SHADOW.push([user, passwd, line, expected]);
  set("root", `${hash("$y$j9T$")}:${recent}:0:99999:7:::`, "set");
  set("lock1", "!:19000:0:99999:7:::", "locked");
  set("lock2", "*:19000:0:99999:7:::", "locked");
  set("lock3", "!*:19000::::::", "locked");
  set("lock4", `!${hash("$6$")}:${recent}:0:99999:7:::`, "locked");
  set("lock5", "!!:19000::::::", "locked");
  set("nopw", `:${recent}:0:99999:7:::`, "empty");
  set("acctgone", `${hash("$6$")}:${recent}:0:99999:7::${TODAY - 1}:`, "expired");
  set("acctday", `${hash("$6$")}:${recent}:0:99999:7::${TODAY}:`, "expired");
  set("acctsoon", `${hash("$6$")}:${recent}:0:99999:7::${TODAY + 1}:`, "set");
  set("aged", `${hash("$6$")}:${TODAY - 100}:0:90:7:::`, "expired");
  set("young", `${hash("$6$")}:${TODAY - 89}:0:90:7:::`, "set");
  set("mustchange", `${hash("$6$")}:0:0:99999:7:::`, "expired");
  set("forever", `${hash("$6$")}:1:0:10000:7:::`, "set");
  SHADOW.push(["noshadow", "x", undefined, "none"]);
  // Old-style entries: the password in passwd itself is the one login uses.
  SHADOW.push(["toor", "", undefined, "empty"]);
  SHADOW.push(["legacy", hash("$1$"), undefined, "set"]);

  const passwd = SHADOW.map(([user, pw], i) => {
    const uid = user === "root" || user === "toor" ? 0 : 1000 + i;
    return `${user}:${pw}:${uid}:${uid === 0 ? 0 : 100}:${user} gecos:/home/${user}:/bin/bash`;
  });
  write("etc/passwd", `${passwd.join("\n")}\n`);
  write(
    "etc/shadow",
    `${SHADOW.filter(([, , s]) => s !== undefined)
      .map(([user, , s]) => `${user}:${s}`)
      .join("\n")}\n`,
  );
  write("etc/group", "root:x:0:\nusers:x:100:\nsudo:x:27:young,aged\nadm:x:4:young\n");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const getent = (db: string) =>
  execFileSync("getent", [db], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(":"));

describe("account: this machine", () => {
  it("lists the users and groups getent lists (name:uid:gid:home:shell, name:gid:members)", async () => {
    const r = await list({}, "/");
    const users = getent("passwd").map(([n, , uid, gid, , home, shell]) =>
      [n, uid, gid, home, shell].join(":"),
    );
    expect(r.users.map((u) => [u.name, u.uid, u.gid, u.home, u.shell].join(":")).sort()).toEqual(
      users.sort(),
    );
    const groups = getent("group").map(([n, , gid, members]) => `${n}:${gid}:${members}`);
    expect(r.groups.map((g) => `${g.name}:${g.gid}:${g.members.join(",")}`).sort()).toEqual(groups.sort());
    expect(users.length).toBeGreaterThan(5);
  });

  it("gives each user the groups id -Gn gives (primary group and supplementary ones)", async () => {
    const r = await list({ usersOnly: true }, "/");
    const gidName = new Map(getent("group").map(([n, , gid]) => [Number(gid), n!]));
    for (const u of r.users) {
      const theirs = execFileSync("id", ["-Gn", u.name], { encoding: "utf8" }).trim().split(" ");
      const ours = [gidName.get(u.gid) ?? String(u.gid), ...u.groups];
      expect(new Set(ours), u.name).toEqual(new Set(theirs));
    }
  });
});

describe("account: a test tree", () => {
  it("gives every password the state its shadow line was written to have", async () => {
    const r = await list();
    expect(r.users.map((u) => [u.name, u.passwordState])).toEqual(SHADOW.map(([u, , , state]) => [u, state]));
    expect(r.users.find((u) => u.name === "young")!.passwordChangedDay).toBe(TODAY - 89);
    expect(r.users.find((u) => u.name === "young")!.groups).toEqual(["sudo", "adm"]);
    expect(r.extraUid0).toEqual(["toor"]);
    // The console's user rows say it at a glance: a second uid 0, an empty password.
    const flags = Object.fromEntries(
      accountConsole.formatter
        .rows(r)
        .filter((row) => row.kind === "user")
        .map((row) => [row.user, row.flags]),
    );
    expect([flags.root, flags.toor, flags.nopw, flags.young]).toEqual([
      "uid0",
      "UID0-NOT-ROOT EMPTY-PASSWORD",
      "EMPTY-PASSWORD",
      "",
    ]);
  });

  it("never sends a hash: no salt, digest or algorithm prefix anywhere in the result", async () => {
    const text = JSON.stringify(AccountResult.toJSON(await list()));
    expect(hashes).toHaveLength(20); // ten hashes, salt and digest of each
    for (const h of hashes) expect(text).not.toContain(h);
    for (const prefix of ["$y$", "$6$", "$1$", "j9T"]) expect(text).not.toContain(prefix);
  });

  it("filters by name, uid 0 and password state", async () => {
    const names = async (p: Partial<AccountParams>) =>
      (await list({ ...p, usersOnly: true })).users.map((u) => u.name);
    expect(await names({ uid0: true })).toEqual(["root", "toor"]);
    expect(await names({ passwordStates: ["empty"] })).toEqual(["nopw", "toor"]);
    expect(await names({ passwordStates: ["expired", "none"] })).toEqual([
      "acctgone",
      "acctday",
      "aged",
      "mustchange",
      "noshadow",
    ]);
    expect(await names({ user: "^lock[12]$" })).toEqual(["lock1", "lock2"]);
    const only = await list({ usersOnly: true });
    expect([only.groups, only.sudoers, only.logins]).toEqual([[], [], []]);
    expect(() => accountModule.check(params({ passwordStates: ["disabled"] }))).toThrow(
      /account: password state "disabled" is not one of locked, empty, set, expired, none/,
    );
    expect(() => accountModule.check(params({ user: "(" }))).toThrow(/account: user regex/);
    expect(() => accountModule.check(params({ maxLogins: 100_001 }))).toThrow(/account: max logins/);
  });

  it("reads sudoers as sudo does: includedir skips '~' and dotted names, includes relative to the file, loops cut", async () => {
    write(
      "etc/sudoers",
      [
        "Defaults\tenv_reset",
        "Defaults:alice !authenticate",
        "# a comment",
        "User_Alias ADMINS = alice, \\",
        "    bob",
        "root\tALL=(ALL:ALL) ALL",
        "%sudo   ALL=(ALL:ALL) ALL   # members of sudo",
        "#1000 ALL=(ALL) NOPASSWD: /usr/bin/id",
        "@includedir /etc/sudoers.d",
        "#include extra",
        "",
      ].join("\n"),
    );
    write("etc/sudoers.d/10-ops", "ADMINS ALL=(root) NOPASSWD: /usr/bin/systemctl\n");
    write("etc/sudoers.d/10-ops~", "mallory ALL=(ALL) NOPASSWD: ALL\n");
    write("etc/sudoers.d/ops.bak", "mallory ALL=(ALL) NOPASSWD: ALL\n");
    write("etc/sudoers.d/README.md", "mallory ALL=(ALL) NOPASSWD: ALL\n");
    write("etc/sudoers.d/zz-last", 'Defaults env_keep += "LD_PRELOAD"\n#include /etc/sudoers\n');
    write("etc/extra", "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart app\n");
    const r = await list();
    const at = (rel: string, line: number) => ({ path: join(root, rel), line });
    expect(r.sudoers).toEqual([
      { ...at("etc/sudoers", 1), kind: "defaults", rule: "Defaults\tenv_reset" },
      { ...at("etc/sudoers", 2), kind: "defaults", rule: "Defaults:alice !authenticate" },
      { ...at("etc/sudoers", 4), kind: "alias", rule: "User_Alias ADMINS = alice, bob" },
      { ...at("etc/sudoers", 6), kind: "user", rule: "root\tALL=(ALL:ALL) ALL" },
      { ...at("etc/sudoers", 7), kind: "user", rule: "%sudo   ALL=(ALL:ALL) ALL" },
      { ...at("etc/sudoers", 8), kind: "user", rule: "#1000 ALL=(ALL) NOPASSWD: /usr/bin/id" },
      {
        ...at("etc/sudoers.d/10-ops", 1),
        kind: "user",
        rule: "ADMINS ALL=(root) NOPASSWD: /usr/bin/systemctl",
      },
      { ...at("etc/sudoers.d/zz-last", 1), kind: "defaults", rule: 'Defaults env_keep += "LD_PRELOAD"' },
      {
        ...at("etc/extra", 1),
        kind: "user",
        rule: "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart app",
      },
    ]);
    expect(JSON.stringify(r.sudoers)).not.toContain("mallory");
    expect(r.errors).toContain(
      `${join(root, "etc/sudoers")}: includes itself (directly or not): not read again`,
    );
  });
});

// --- wtmp and lastlog ---

const USER_PROCESS = 7;
const DEAD_PROCESS = 8;
const BOOT_TIME = 2;
const RUN_LVL = 1;

/** One struct utmp as glibc writes it on x86_64 (384 bytes). */
function utmp(r: {
  type: number;
  pid?: number;
  line: string;
  user?: string;
  host?: string;
  sec: number;
  usec?: number;
}) {
  const b = Buffer.alloc(384);
  b.writeInt16LE(r.type, 0);
  b.writeInt32LE(r.pid ?? 0, 4);
  b.write(r.line, 8, 32);
  b.write(r.line.slice(-4), 40, 4);
  b.write(r.user ?? "", 44, 32);
  b.write(r.host ?? "", 76, 256);
  b.writeInt32LE(r.sec, 340);
  b.writeInt32LE(r.usec ?? 0, 344);
  return b;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** ctime(3)'s "Thu Nov 14 22:13:20 2023" (UTC) as seconds. */
function ctimeSeconds(text: string): number {
  const [, mon, day, time, year] = text.trim().split(/\s+/);
  const [h, m, s] = time!.split(":").map(Number);
  return Date.UTC(Number(year), MONTHS.indexOf(mon!), Number(day), h, m, s) / 1000;
}

const DATE = String.raw`\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}`;
/** `last -F -w`'s lines as [user, line, host, login s, how it ended] ("- <logout s>", "crash", "down", "open"). */
function lastSays(file?: string): string[][] {
  const out = execFileSync("last", ["-F", "-w", ...(file ? ["-f", file] : [])], {
    encoding: "utf8",
    env: { ...process.env, TZ: "UTC", LC_ALL: "C" },
  });
  const re = new RegExp(
    `^(\\S+)\\s+(system boot|\\S+)\\s+(.*?)\\s*(${DATE}) (- (${DATE})|- crash|- down|\\s*still.*|\\s*gone.*)`,
  );
  return out
    .split("\n")
    .filter((l) => re.test(l))
    .map((l) => {
      const m = re.exec(l)!;
      const end = m[6]
        ? `- ${ctimeSeconds(m[6])}`
        : /crash/.test(m[5]!)
          ? "crash"
          : /down/.test(m[5]!)
            ? "down"
            : "open";
      return [m[1]!, m[2]!, m[3]!.trim(), String(ctimeSeconds(m[4]!)), end];
    });
}
const ourLast = (logins: Login[]) =>
  logins.map((l) => [
    l.user,
    l.line,
    l.host,
    String(Math.floor(l.loginMs / 1000)),
    l.end === "logout" || (l.type === "reboot" && l.end === "down")
      ? `- ${Math.floor(l.logoutMs / 1000)}`
      : l.end,
  ]);

describe("account: logins", () => {
  // util-linux's last reads wtmp files; wtmpdb's (Debian 13) reads its own database instead.
  const utilLinuxLast = spawnSync("last", ["--version"], { encoding: "utf8" }).stdout?.includes("util-linux");

  // An empty wtmp (containers, CI) is compared too: both must say nothing.
  const live = utilLinuxLast && existsSync("/var/log/wtmp");

  it.skipIf(!live)("tells this machine's wtmp as last -F does", async () => {
    const r = await list({ maxLogins: 100_000 }, "/");
    expect(ourLast(r.logins)).toEqual(lastSays());
  });

  it.skipIf(!utilLinuxLast)(
    "pairs logins with logouts, shutdowns and crashes as last -F does, on a wtmp the test writes",
    async () => {
      const t0 = 1_700_000_000;
      const records = [
        utmp({ type: BOOT_TIME, line: "~", user: "reboot", host: "6.1.0-test", sec: t0 }),
        utmp({
          type: USER_PROCESS,
          pid: 4001,
          line: "pts/0",
          user: "alice",
          host: "198.51.100.7",
          sec: t0 + 100,
        }),
        utmp({ type: USER_PROCESS, pid: 4002, line: "tty1", user: "bob", host: "", sec: t0 + 200 }),
        utmp({ type: DEAD_PROCESS, pid: 4001, line: "pts/0", sec: t0 + 700 }),
        utmp({ type: RUN_LVL, pid: 0x30, line: "~", user: "shutdown", host: "6.1.0-test", sec: t0 + 1000 }),
        utmp({ type: BOOT_TIME, line: "~", user: "reboot", host: "6.1.0-test", sec: t0 + 2000 }),
        utmp({
          type: USER_PROCESS,
          pid: 4003,
          line: "pts/1",
          user: "carol",
          host: "203.0.113.5",
          sec: t0 + 2100,
        }),
        utmp({ type: BOOT_TIME, line: "~", user: "reboot", host: "6.1.0-test", sec: t0 + 3000 }),
        utmp({
          type: USER_PROCESS,
          pid: 4004,
          line: "pts/2",
          user: "dave",
          host: "192.0.2.1",
          sec: t0 + 3100,
        }),
        utmp({
          type: USER_PROCESS,
          pid: 4005,
          line: "pts/3",
          user: "eve",
          host: "10.1.2.3",
          sec: t0 + 3200,
          usec: 250_000,
        }),
        utmp({ type: DEAD_PROCESS, pid: 4005, line: "pts/3", sec: t0 + 3300, usec: 999_999 }),
        // carol's line again after the crash: her session still ended with the crash, not with this one.
        utmp({
          type: USER_PROCESS,
          pid: 4006,
          line: "pts/1",
          user: "frank",
          host: "10.1.2.4",
          sec: t0 + 3400,
        }),
        utmp({ type: DEAD_PROCESS, pid: 4006, line: "pts/1", sec: t0 + 3500 }),
      ];
      const wtmp = write("var/log/wtmp", Buffer.concat(records));
      const r = await list();
      const theirs = lastSays(wtmp);
      expect(theirs).toHaveLength(9);
      expect(ourLast(r.logins)).toEqual(theirs);
      // What last(1) only hints at: the ends' kinds and times to the millisecond.
      expect(r.logins.map((l) => `${l.user}:${l.end}`)).toEqual([
        "frank:logout",
        "eve:logout",
        "dave:open",
        "reboot:open",
        "carol:crash",
        "reboot:open",
        "bob:down",
        "alice:logout",
        "reboot:down",
      ]);
      expect(r.logins[1]).toMatchObject({
        loginMs: (t0 + 3200) * 1000 + 250,
        logoutMs: (t0 + 3300) * 1000 + 999,
      });
      expect(r.logins.find((l) => l.user === "carol")!.logoutMs).toBe((t0 + 3000) * 1000);

      // Bounded: the newest first, the rest counted; a user filter keeps that user's logins.
      const bounded = await list({ maxLogins: 3 });
      expect([bounded.logins.map((l) => l.user), bounded.loginsLeftOut]).toEqual([
        ["frank", "eve", "dave"],
        6,
      ]);
      expect((await list({ user: "^(alice|carol)$" })).logins.map((l) => l.user)).toEqual(["carol", "alice"]);
    },
  );

  // lastlog -R chroots (root only); Debian 13 replaced lastlog with lastlog2.
  const lastlogHere = process.getuid?.() === 0 && spawnSync("lastlog", ["--help"]).status === 0;

  it.skipIf(!lastlogHere)("gives each user's last login as lastlog -R does", async () => {
    const users = (await list({ usersOnly: true })).users;
    const uidOf = (name: string) => users.find((u) => u.name === name)!.uid;
    const planted: Array<[string, number, string, string]> = [
      ["young", 1_710_000_000, "pts/4", "198.51.100.20"],
      ["aged", 1_600_000_123, "tty2", "console-host"],
    ];
    const maxUid = Math.max(...users.map((u) => u.uid));
    const lastlog = Buffer.alloc(292 * (maxUid + 1));
    for (const [name, sec, line, host] of planted) {
      const at = uidOf(name) * 292;
      lastlog.writeInt32LE(sec, at);
      lastlog.write(line, at + 4, 32);
      lastlog.write(host, at + 36, 256);
    }
    write("var/log/lastlog", lastlog);
    const theirs = execFileSync("lastlog", ["-R", root], {
      encoding: "utf8",
      env: { ...process.env, TZ: "UTC", LC_ALL: "C" },
    })
      .split("\n")
      .slice(1)
      .filter(Boolean)
      .map((line) => {
        if (line.includes("**Never logged in**")) return [line.split(/\s+/)[0]!, "", "", "never"];
        const m = /^(\S+)\s+(\S+)\s+(\S+)\s+\w{3} (\w{3}) +(\d+) (\d\d:\d\d:\d\d) \+0000 (\d{4})$/.exec(
          line,
        )!;
        return [m[1]!, m[2]!, m[3]!, String(ctimeSeconds(`x ${m[4]} ${m[5]} ${m[6]} ${m[7]}`))];
      });
    const ours = (await list({ usersOnly: true })).users.map((u) => [
      u.name,
      u.lastLoginLine,
      u.lastLoginFrom,
      u.lastLoginMs ? String(u.lastLoginMs / 1000) : "never",
    ]);
    expect(ours).toEqual(theirs);
    expect(ours.filter((o) => o[3] !== "never")).toHaveLength(2);
  });

  it("stops reading sudoers includes that fan out (each file including the next twice), saying so", async () => {
    write("etc/sudoers", "root ALL=(ALL:ALL) ALL\n#include /etc/fan/s1\n");
    // 2^30 visits without a bound.
    for (let i = 1; i <= 30; i++)
      write(
        `etc/fan/s${i}`,
        `u${i} ALL=(ALL) ALL\n#include /etc/fan/s${i + 1}\n#include /etc/fan/s${i + 1}\n`,
      );
    const started = performance.now();
    const r = await list();
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(r.sudoers.length).toBeLessThanOrEqual(1001);
    expect(r.sudoers[0]).toMatchObject({ path: join(root, "etc/sudoers"), rule: "root ALL=(ALL:ALL) ALL" });
    expect(r.errors).toContain("sudoers: more than 1000 files read or 5000 rules kept: the rest not read");
  });

  it("runs as a module over DRAGNET_PACKAGE_ROOT: found when a user passes the filters", async () => {
    const before = process.env.DRAGNET_PACKAGE_ROOT;
    process.env.DRAGNET_PACKAGE_ROOT = root;
    try {
      const ctx = { signal, log: silentLogger, stateDir: "/nonexistent" };
      const hit = await accountModule.run(params({ uid0: true, usersOnly: true }), ctx);
      expect([hit.found, hit.result.users.map((u) => u.name)]).toEqual([true, ["root", "toor"]]);
      expect((await accountModule.run(params({ user: "^no-such-user$" }), ctx)).found).toBe(false);
    } finally {
      if (before === undefined) delete process.env.DRAGNET_PACKAGE_ROOT;
      else process.env.DRAGNET_PACKAGE_ROOT = before;
    }
  });
});
