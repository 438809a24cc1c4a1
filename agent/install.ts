import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { Codes, DragnetError, writeFileAtomic } from "../common/mod.js";

// `dragnet-agent install` and `uninstall`: the executable, its configuration
// and keyring, a state directory and a systemd unit, in the usual places under
// a root (/ by default; a temporary directory in tests and --dry-run). The
// config is copied with the files it names (keyring, NATS credentials, CA)
// next to it, and rewritten to point at the copies. Uninstall removes exactly
// what install wrote, and keeps the state directory (it holds the record of
// actions run, baselines and the quarantine vault) unless --purge.

export const PATHS = {
  exe: "/usr/local/bin/dragnet-agent",
  etc: "/etc/dragnet",
  config: "/etc/dragnet/config.json",
  state: "/var/lib/dragnet",
  unit: "/etc/systemd/system/dragnet-agent.service",
};

/**
 * glibc's malloc as the unit sets it (bench:agent starts the executable with the same): two
 * arenas, not one per thread that ever allocated (search workers, libuv's pool), and blocks of
 * 128 KiB and more given back when freed (glibc otherwise raises both thresholds after the first
 * large free and keeps what a scan used). Less private memory kept after a scan (bench:agent:
 * 17-19 MB idle, 16-17 MB a minute after a 100k-file scan).
 */
export const MALLOC_ENVIRONMENT: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "131072",
  MALLOC_TRIM_THRESHOLD_: "131072",
};

/**
 * The unit, with each hardening choice deliberate: an investigator reads the
 * whole host, so nothing may hide files from it (no ProtectHome, ProtectSystem,
 * PrivateTmp or PrivateDevices: they would blind `file`, `drift` and `memory`
 * to homes, /usr, /tmp and /dev), and response modules move files and change
 * the firewall as root (no capability bounding). What it gets instead: a clean
 * environment (systemd passes none of the caller's, so no NODE_OPTIONS), a
 * fixed PATH for nft/iptables/ip, two malloc arenas, lower CPU and I/O priority so scans yield to
 * the host's own work, a private umask, restart on any exit, and no new
 * privileges for what it spawns beyond what root already has.
 */
export function unitFile(): string {
  return `[Unit]
Description=Dragnet endpoint agent
Documentation=https://github.com/dragnet/dragnet
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
# After an upgrade, the previous executable (known to work) first rolls back one whose
# watchdog a reboot ended before the new version proved healthy.
ExecStartPre=-/bin/sh -c 'test ! -x ${PATHS.exe}.previous || exec ${PATHS.exe}.previous upgrade-check --state-dir ${PATHS.state}'
ExecStart=${PATHS.exe} run --config ${PATHS.config}
Restart=always
RestartSec=5
# The agent tells systemd it is alive (systemd-notify) every 20 s; one whose main
# thread hangs stops, and is restarted after a minute.
WatchdogSec=60
NotifyAccess=all
# A clean environment: only this PATH (the firewall tools live in sbin).
Environment=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Two malloc arenas, and large blocks given back when freed: less private memory kept after a scan.
${Object.entries(MALLOC_ENVIRONMENT)
  .map(([name, value]) => `Environment=${name}=${value}\n`)
  .join("")}UMask=0077
# Scans yield to the host's own work.
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
NoNewPrivileges=yes
LimitNOFILE=65536
# Deliberately absent: ProtectHome, ProtectSystem, PrivateTmp, PrivateDevices,
# CapabilityBoundingSet — each would hide part of the host from investigation
# or stop containment (see the README, "Installing the agent").

[Install]
WantedBy=multi-user.target
`;
}

export interface InstallStep {
  /** What it is, for people. */
  what: string;
  path: string;
  mode: number;
  /** A directory, a file copied from `from`, or a file with this content. */
  dir?: boolean;
  from?: string;
  content?: string;
}

/** The files a config names (keyring, NATS credentials and CA), resolved from the config's directory. */
function referenced(config: Record<string, unknown>, baseDir: string) {
  const at = (p: unknown) =>
    typeof p === "string" && p ? (isAbsolute(p) ? p : resolve(baseDir, p)) : undefined;
  const nats = (config.nats ?? {}) as Record<string, unknown>;
  return {
    keyring: at(config.keyring),
    creds: at(nats.creds),
    ca: at(nats.ca),
    releaseKeys: at(config.releaseKeys),
  };
}

/** What install writes, in order; nothing is touched. */
export function planInstall(configPath: string, exe: string): InstallStep[] {
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot read config ${configPath}: ${(err as Error).message}`);
  }
  const refs = referenced(config, dirname(resolve(configPath)));
  if (!refs.keyring)
    throw new DragnetError(Codes.CONFIG, `${configPath} names no keyring: the agent would trust nobody`);
  for (const [what, p] of Object.entries(refs)) {
    if (p && !existsSync(p))
      throw new DragnetError(Codes.CONFIG, `${configPath}: its ${what} ${p} does not exist`);
  }
  const installed = {
    ...config,
    stateDir: PATHS.state,
    keyring: join(PATHS.etc, "keyring.json"),
    ...(refs.releaseKeys ? { releaseKeys: join(PATHS.etc, "release-keys.json") } : {}),
    nats: {
      ...((config.nats ?? {}) as object),
      ...(refs.creds ? { creds: join(PATHS.etc, "agent.creds") } : {}),
      ...(refs.ca ? { ca: join(PATHS.etc, "ca.pem") } : {}),
    },
  };
  return [
    { what: "agent executable", path: PATHS.exe, mode: 0o755, from: exe },
    { what: "configuration directory (root only)", path: PATHS.etc, mode: 0o700, dir: true },
    {
      what: "configuration",
      path: PATHS.config,
      mode: 0o600,
      content: `${JSON.stringify(installed, null, 2)}\n`,
    },
    {
      what: "trusted investigators and ACL",
      path: join(PATHS.etc, "keyring.json"),
      mode: 0o600,
      from: refs.keyring,
    },
    ...(refs.creds
      ? [{ what: "NATS credentials", path: join(PATHS.etc, "agent.creds"), mode: 0o600, from: refs.creds }]
      : []),
    ...(refs.ca
      ? [{ what: "NATS CA certificate", path: join(PATHS.etc, "ca.pem"), mode: 0o644, from: refs.ca }]
      : []),
    ...(refs.releaseKeys
      ? [
          {
            what: "release keys (whose signed releases `upgrade` runs)",
            path: join(PATHS.etc, "release-keys.json"),
            mode: 0o600,
            from: refs.releaseKeys,
          },
        ]
      : []),
    { what: "state directory (root only)", path: PATHS.state, mode: 0o700, dir: true },
    { what: "systemd unit", path: PATHS.unit, mode: 0o644, content: unitFile() },
  ];
}

const under = (root: string, path: string) => join(root, path);

/** Whether systemd runs this machine (so the unit can be enabled and started now). */
export function systemdRunning(root: string): boolean {
  return root === "/" && existsSync("/run/systemd/system");
}

function systemctl(args: string[]): string {
  const r = spawnSync("systemctl", args, { encoding: "utf8" });
  return r.status === 0 ? "ok" : `failed: ${(r.stderr || r.error?.message || "").trim()}`;
}

/** Carries out the plan under `root`; returns one line per step, for the operator. */
export function install(steps: InstallStep[], root: string): string[] {
  const done: string[] = [];
  for (const s of steps) {
    const target = under(root, s.path);
    mkdirSync(dirname(target), { recursive: true });
    if (s.dir) mkdirSync(target, { recursive: true, mode: s.mode });
    else if (s.from) copyFileSync(s.from, target);
    else writeFileAtomic(target, s.content ?? "", s.mode);
    chmodSync(target, s.mode);
    done.push(`${s.dir ? "made" : "wrote"} ${target} (${s.what}, ${s.mode.toString(8).padStart(4, "0")})`);
  }
  if (systemdRunning(root)) {
    done.push(`systemctl daemon-reload: ${systemctl(["daemon-reload"])}`);
    done.push(
      `systemctl enable --now dragnet-agent: ${systemctl(["enable", "--now", "dragnet-agent.service"])}`,
    );
  } else {
    done.push(
      "systemd is not running here: enable and start it with `systemctl enable --now dragnet-agent` where it does",
    );
  }
  return done;
}

/** After enrolment: restarts the installed service so it connects with its new credentials. */
export function restartIfInstalled(): string {
  if (!systemdRunning("/") || !existsSync(PATHS.unit)) {
    return "start (or restart) the agent to connect with these credentials";
  }
  return `systemctl restart dragnet-agent: ${systemctl(["restart", "dragnet-agent.service"])}`;
}

/** Removes what install wrote under `root`; the state directory only with `purge`. */
export function uninstall(root: string, purge: boolean): string[] {
  const done: string[] = [];
  if (existsSync(join(under(root, PATHS.state), "isolation.json"))) {
    throw new DragnetError(
      Codes.PARAMS,
      "this host is isolated by the agent: unisolate it first (uninstalling would leave its firewall rules with nobody to lift them)",
    );
  }
  if (systemdRunning(root)) {
    done.push(
      `systemctl disable --now dragnet-agent: ${systemctl(["disable", "--now", "dragnet-agent.service"])}`,
    );
  }
  for (const p of [
    PATHS.unit,
    PATHS.exe,
    `${PATHS.exe}.previous`,
    PATHS.etc,
    ...(purge ? [PATHS.state] : []),
  ]) {
    const target = under(root, p);
    if (!existsSync(target)) continue;
    rmSync(target, { recursive: true, force: true });
    done.push(`removed ${target}`);
  }
  if (systemdRunning(root)) done.push(`systemctl daemon-reload: ${systemctl(["daemon-reload"])}`);
  if (!purge && existsSync(under(root, PATHS.state))) {
    done.push(
      `kept ${under(root, PATHS.state)} (actions run, baselines, the quarantine vault): --purge removes it`,
    );
  }
  return done;
}

export const describeStep = (s: InstallStep, root: string) =>
  `${s.dir ? "directory" : "file"} ${under(root, s.path)} ${s.mode.toString(8).padStart(4, "0")} — ${s.what}${s.from ? ` (from ${s.from})` : ""}${basename(s.path) === "dragnet-agent.service" ? `\n${unitFile().replace(/^/gm, "    ")}` : ""}`;

/** The executable to install: this one, when it is the built agent, not Node running a script. */
export function installableExecutable(): string {
  if (/^node(js)?(\.exe)?$/.test(basename(process.execPath))) {
    throw new DragnetError(
      Codes.CONFIG,
      "install runs from the built agent executable (npm run build: dist/dragnet-agent), not from Node",
    );
  }
  return process.execPath;
}
