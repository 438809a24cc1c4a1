import { lstat } from "node:fs/promises";
import { release } from "node:os";
import { basename, join } from "node:path";
import { clip } from "./cron.js";
import { entry, listDir, type RawEntry, type Root, readText, resolveInRoot } from "./entry.js";

// The other places that start something: SysV init scripts and rc.local, the
// shells' startup files (system-wide and in every home), ld.so.preload, udev
// rules that RUN programs, and the kernel modules loaded now.

export async function initEntries(root: Root, errors: string[]): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  // Which runlevels start each script: S links in /etc/rc?.d.
  const startedIn = new Map<string, string[]>();
  for (const level of ["S", "0", "1", "2", "3", "4", "5", "6"]) {
    const dir = root.at(`/etc/rc${level}.d`);
    for (const link of await listDir(dir, errors)) {
      if (!/^S\d\d/.test(link)) continue;
      const leads = await resolveInRoot(root, join(dir, link));
      const script = basename(leads ?? link.slice(3));
      startedIn.set(script, [...(startedIn.get(script) ?? []), `rc${level}`]);
    }
  }
  const initd = root.at("/etc/init.d");
  for (const name of await listDir(initd, errors)) {
    const path = join(initd, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st || st.isDirectory() || name === "README" || name.startsWith(".")) continue;
    const levels = startedIn.get(name) ?? [];
    out.push(
      entry("initd", path, {
        name,
        command: path,
        schedule: levels.join(" "),
        state: levels.length ? "enabled" : "disabled",
        user: "root",
      }),
    );
  }
  return out;
}

export async function rcLocalEntries(root: Root, errors: string[]): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  for (const rc of ["/etc/rc.local", "/etc/rc.d/rc.local"]) {
    const path = root.at(rc);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isFile()) continue;
    const text = (await readText(path, errors)) ?? "";
    const commands = text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#") && l !== "exit 0");
    out.push(
      entry("rc_local", path, {
        name: basename(rc),
        command: clip(commands.join("; ")),
        schedule: "boot",
        user: "root",
        // systemd's rc-local generator runs it only when it is executable.
        state: (Number(st.mode) & 0o111) !== 0 ? "executable" : "not-executable",
      }),
    );
  }
  return out;
}

const SYSTEM_SHELL_FILES: [string, string][] = [
  ["/etc/profile", "login"],
  ["/etc/bash.bashrc", "interactive"],
  ["/etc/bashrc", "interactive"],
  ["/etc/bash.bash_logout", "logout"],
  ["/etc/environment", "login"],
  ["/etc/zshenv", "shell"],
  ["/etc/zprofile", "login"],
  ["/etc/zshrc", "interactive"],
  ["/etc/zlogin", "login"],
  ["/etc/zsh/zshenv", "shell"],
  ["/etc/zsh/zprofile", "login"],
  ["/etc/zsh/zshrc", "interactive"],
  ["/etc/zsh/zlogin", "login"],
  ["/etc/fish/config.fish", "interactive"],
];
const SYSTEM_SHELL_DIRS: [string, string][] = [
  ["/etc/profile.d", "login"],
  ["/etc/fish/conf.d", "interactive"],
];
const HOME_SHELL_FILES: [string, string][] = [
  [".profile", "login"],
  [".bash_profile", "login"],
  [".bash_login", "login"],
  [".bashrc", "interactive"],
  [".bash_logout", "logout"],
  [".zshenv", "shell"],
  [".zprofile", "login"],
  [".zshrc", "interactive"],
  [".zlogin", "login"],
  [".config/fish/config.fish", "interactive"],
];

/** Variables that make every program load code: worth a flag wherever a startup file sets them. */
const PRELOADING = /\b(LD_PRELOAD|LD_LIBRARY_PATH|LD_AUDIT)\s*=/;

export async function shellEntries(
  root: Root,
  errors: string[],
  users: { name: string; home: string }[],
): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  const add = async (path: string, schedule: string, user: string, skel?: string) => {
    const st = await lstat(path).catch(() => undefined);
    if (!st || st.isDirectory()) return;
    const text = st.isFile() ? ((await readText(path, errors)) ?? "") : "";
    const flags = PRELOADING.test(text) ? ["sets-preload"] : [];
    out.push(
      entry("shell", path, { name: basename(path), schedule, user, flags, ...(skel ? { skel } : {}) }),
    );
  };
  for (const [file, when] of SYSTEM_SHELL_FILES) await add(root.at(file), when, "");
  for (const [dir, when] of SYSTEM_SHELL_DIRS)
    for (const name of await listDir(root.at(dir), errors)) await add(join(root.at(dir), name), when, "");
  const homes = new Set<string>();
  for (const u of users) {
    // Homes shared by many system users ("/", "/nonexistent") are read once.
    if (!u.home.startsWith("/") || homes.has(u.home)) continue;
    homes.add(u.home);
    for (const [file, when] of HOME_SHELL_FILES)
      await add(root.at(join(u.home, file)), when, u.name, root.at(`/etc/skel/${file}`));
  }
  return out;
}

export async function preloadEntries(root: Root, errors: string[]): Promise<RawEntry[]> {
  const path = root.at("/etc/ld.so.preload");
  const text = await readText(path, errors);
  if (text === undefined) return [];
  const libraries = text
    .split("\n")
    .map((l) => l.replace(/#.*/, ""))
    .flatMap((l) => l.split(/[\s:]+/))
    .filter(Boolean);
  const out: RawEntry[] = [];
  for (const lib of libraries) {
    const at = root.at(lib);
    const there = await lstat(at).catch(() => undefined);
    out.push(
      entry("ld_preload", at, {
        name: lib,
        command: `${path}: ${lib}`,
        schedule: "every program",
        state: "preloaded",
        flags: there ? [] : ["missing"],
      }),
    );
  }
  return out;
}

/** udev's rules directories, highest priority first: a file in an earlier one hides the same name after. */
const UDEV_DIRS = [
  "/etc/udev/rules.d",
  "/run/udev/rules.d",
  "/usr/local/lib/udev/rules.d",
  "/usr/lib/udev/rules.d",
  "/lib/udev/rules.d",
];
const RUN_KEY = /\bRUN(?:\{(program|builtin)\})?\s*\+?=\s*"([^"]*)"/g;

export async function udevEntries(root: Root, errors: string[]): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  const seenDirs = new Set<string>();
  const seenNames = new Set<string>();
  for (const d of UDEV_DIRS) {
    const real = await resolveInRoot(root, root.at(d));
    if (!real || seenDirs.has(real)) continue;
    seenDirs.add(real);
    for (const name of await listDir(root.at(d), errors)) {
      if (!name.endsWith(".rules")) continue;
      const path = join(root.at(d), name);
      const overridden = seenNames.has(name);
      seenNames.add(name);
      const text = await readText(path, errors); // a link to /dev/null (a mask) reads as nothing
      if (!text) continue;
      const lines = text.split("\n");
      for (let i = 0; i < lines.length; i++) {
        let line = lines[i]!;
        const first = i + 1;
        while (line.endsWith("\\") && i + 1 < lines.length) line = line.slice(0, -1) + lines[++i]!;
        if (line.trimStart().startsWith("#")) continue;
        for (const m of line.matchAll(RUN_KEY)) {
          if (m[1] === "builtin") continue; // udev's own code, no program
          out.push(
            entry("udev", path, {
              name: `${name}:${first}`,
              command: clip(m[2]!),
              schedule: "device event",
              user: "root",
              state: overridden ? "overridden" : "active",
            }),
          );
        }
      }
    }
  }
  return out;
}

/** Taint letters of /sys/module/<m>/taint worth a flag. */
const TAINTS: Record<string, string> = {
  O: "out-of-tree",
  E: "unsigned",
  P: "proprietary",
  F: "forced",
  C: "staging",
};

export async function kernelModuleEntries(root: Root, errors: string[]): Promise<RawEntry[]> {
  const modules = await readText(root.at("/proc/modules"), errors);
  if (modules === undefined) return [];
  const kernel = (await readText(root.at("/proc/sys/kernel/osrelease"), errors))?.trim() || release();
  // Each module's file, from depmod's index (names use "_" where files may use "-").
  const files = new Map<string, string>();
  for (const base of [`/lib/modules/${kernel}`, `/usr/lib/modules/${kernel}`]) {
    const dep = await readText(root.at(`${base}/modules.dep`), errors, 64 * 1024 * 1024);
    if (!dep) continue;
    for (const line of dep.split("\n")) {
      const file = line.slice(0, line.indexOf(":"));
      if (!file) continue;
      const name = basename(file)
        .replace(/\.ko(\.(xz|zst|gz))?$/, "")
        .replace(/-/g, "_");
      if (!files.has(name)) files.set(name, root.at(file.startsWith("/") ? file : `${base}/${file}`));
    }
    break;
  }
  const out: RawEntry[] = [];
  for (const line of modules.split("\n")) {
    const [name, , , , state] = line.split(" ");
    if (!name) continue;
    const taint = ((await readText(root.at(`/sys/module/${name}/taint`), [])) ?? "").trim();
    const flags = [...taint].map((t) => TAINTS[t]).filter((f): f is string => !!f);
    const file = files.get(name);
    // Loaded, but not from where depmod knows modules: insmod of a file from elsewhere.
    if (!file) flags.push("not-in-modules.dep");
    out.push(
      entry("kernel_module", file ?? "", {
        name,
        state: !state || state === "Live" ? "loaded" : state.toLowerCase(),
        schedule: "loaded",
        flags,
      }),
    );
  }
  return out;
}
