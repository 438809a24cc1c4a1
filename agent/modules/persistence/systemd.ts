import { lstat } from "node:fs/promises";
import { basename, join } from "node:path";
import { entry, linkTarget, listDir, type RawEntry, type Root, readText, resolveInRoot } from "./entry.js";

// systemd's unit files, each once under the name systemd loads it by (the
// first directory of the search path that has it), with its state computed
// the way `systemctl list-unit-files` does: masked (a link to /dev/null or an
// empty file), alias (a link under another unit's name), generated, transient,
// linked (a link to a file outside the search path), enabled (linked from a
// .wants/.requires/.upholds directory or an Alias= name in a configuration
// directory), indirect (reached under other names, or only through Also=),
// disabled (has [Install] rules, none applied) or static (no [Install] rules).
// Drop-ins (<unit>.d/*.conf) are entries of their own: they can replace
// ExecStart= of a packaged unit without touching its file.

type Role = "config" | "transient" | "generator" | "vendor" | "attached";

interface UnitDir {
  /** The directory on the examined system. */
  path: string;
  role: Role;
}

/** System units, in the search path's order (systemd 252, with /lib before /run/systemd/generator.late). */
export const SYSTEM_UNIT_DIRS: UnitDir[] = [
  { path: "/etc/systemd/system.control", role: "config" },
  { path: "/run/systemd/system.control", role: "config" },
  { path: "/run/systemd/transient", role: "transient" },
  { path: "/run/systemd/generator.early", role: "generator" },
  { path: "/etc/systemd/system", role: "config" },
  { path: "/etc/systemd/system.attached", role: "attached" },
  { path: "/run/systemd/system", role: "config" },
  { path: "/run/systemd/system.attached", role: "attached" },
  { path: "/run/systemd/generator", role: "generator" },
  { path: "/usr/local/lib/systemd/system", role: "vendor" },
  { path: "/usr/lib/systemd/system", role: "vendor" },
  { path: "/lib/systemd/system", role: "vendor" },
  { path: "/run/systemd/generator.late", role: "generator" },
];

/** Units every user's manager loads (`systemctl --global`). */
export const GLOBAL_USER_UNIT_DIRS: UnitDir[] = [
  { path: "/etc/systemd/user", role: "config" },
  { path: "/run/systemd/user", role: "config" },
  { path: "/usr/local/lib/systemd/user", role: "vendor" },
  { path: "/usr/lib/systemd/user", role: "vendor" },
];

/** One user's own units, before the global ones (`systemctl --user`). */
export const homeUnitDirs = (home: string): UnitDir[] => [
  { path: join(home, ".config/systemd/user"), role: "config" },
  ...GLOBAL_USER_UNIT_DIRS,
  { path: join(home, ".local/share/systemd/user"), role: "vendor" },
];

const UNIT_NAME =
  /^[A-Za-z0-9:_.\\-]+(?:@[A-Za-z0-9:_.\\-]*)?\.(service|socket|target|device|mount|automount|swap|timer|path|slice|scope)$/;
const DEPENDENCY_DIR = /\.(wants|requires|upholds)$/;
const TIMER_KEYS = [
  "OnCalendar",
  "OnBootSec",
  "OnStartupSec",
  "OnActiveSec",
  "OnUnitActiveSec",
  "OnUnitInactiveSec",
];

/** A unit file's settings: each section's keys, every value in order (an empty assignment resets). */
export function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  // Continuation lines end in a backslash; comments start with # or ;.
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section) {
      current = sections.get(section[1]!) ?? new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (!current || eq < 1) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (value === "") current.set(key, []);
    else current.set(key, [...(current.get(key) ?? []), value]);
  }
  return sections;
}

const words = (values: string[] | undefined) => (values ?? []).flatMap((v) => v.split(/\s+/)).filter(Boolean);

interface Fragment {
  name: string;
  /** Host path of the entry in the unit directory (perhaps a link). */
  path: string;
  dir: UnitDir;
  /** Host path of the file whose content is the unit, or null when masked. */
  file: string | null;
  linkTarget?: string;
}

/** A symlink in a configuration directory: enablement (in a .wants/.requires/.upholds dir) or an alias. */
interface ConfigLink {
  name: string;
  /** The unit name it leads to (the final target's file name). */
  leadsTo: string;
  inDependencyDir: boolean;
  runtime: boolean;
}

const isRuntime = (dir: UnitDir) => dir.path.startsWith("/run/");

/**
 * The unit files of one scope (`dirs` in search-path order). `emitFrom`
 * limits the entries to units found in those directories (a user's own,
 * when the global ones are listed already); `user` is set on each.
 */
export async function scanUnits(
  root: Root,
  dirs: UnitDir[],
  errors: string[],
  options: { emitFrom?: Set<string>; user?: string } = {},
): Promise<RawEntry[]> {
  // Directories that are the same place (/lib → /usr/lib on merged systems) are searched once.
  const seenDirs = new Set<string>();
  const present: UnitDir[] = [];
  for (const d of dirs) {
    const real = await resolveInRoot(root, root.at(d.path));
    if (!real || seenDirs.has(real)) continue;
    seenDirs.add(real);
    present.push(d);
  }
  /** A file in the search path (a link to one elsewhere makes a "linked" unit). */
  const inside = (hostPath: string) => [...seenDirs].some((d) => hostPath.startsWith(`${d}/`));

  const fragments = new Map<string, Fragment>();
  const dropIns: { entry: RawEntry; dir: UnitDir }[] = [];
  const links: ConfigLink[] = [];
  for (const dir of present) {
    const base = root.at(dir.path);
    for (const name of await listDir(base, errors)) {
      const path = join(base, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) {
        if (dir.role === "config" && DEPENDENCY_DIR.test(name)) {
          for (const link of await listDir(path, errors)) {
            const leads = await resolveInRoot(root, join(path, link));
            links.push({
              name: link,
              leadsTo: leads ? basename(leads) : basename((await linkTarget(join(path, link))) ?? link),
              inDependencyDir: true,
              runtime: isRuntime(dir),
            });
          }
        } else if (name.endsWith(".d")) {
          for (const conf of await listDir(path, errors)) {
            if (!conf.endsWith(".conf")) continue;
            dropIns.push({
              entry: entry("systemd", join(path, conf), {
                name: `${name.slice(0, -2)} (drop-in)`,
                state: "drop-in",
              }),
              dir,
            });
          }
        }
        continue;
      }
      if (!UNIT_NAME.test(name)) continue;
      const target = st.isSymbolicLink() ? await linkTarget(path) : undefined;
      if (st.isSymbolicLink() && dir.role === "config") {
        const leads = await resolveInRoot(root, path);
        links.push({
          name,
          leadsTo: leads ? basename(leads) : basename(target ?? name),
          inDependencyDir: false,
          runtime: isRuntime(dir),
        });
      }
      if (fragments.has(name)) continue; // shadowed by an earlier directory
      const file = target === "/dev/null" ? null : ((await resolveInRoot(root, path)) ?? null);
      fragments.set(name, { name, path, dir, file, linkTarget: target });
    }
  }

  const out: RawEntry[] = [];
  for (const f of fragments.values()) {
    if (options.emitFrom && !options.emitFrom.has(f.dir.path)) continue;
    const text = f.file ? ((await readText(f.file, errors)) ?? "") : "";
    const unit = parseUnit(text);
    const e = entry("systemd", f.path, { name: f.name, file: f.file, user: options.user ?? "" });
    e.state = stateOf(f, text, unit, links, inside);
    const service = unit.get("Service");
    e.command = (service?.get("ExecStart") ?? []).join(" ; ");
    if (service?.get("User")?.length) e.user = service.get("User")!.at(-1)!;
    const timer = unit.get("Timer");
    if (timer) {
      e.schedule = TIMER_KEYS.flatMap((k) => (timer.get(k) ?? []).map((v) => `${k}=${v}`)).join(" ");
      e.command ||= `→ ${timer.get("Unit")?.at(-1) ?? f.name.replace(/\.timer$/, ".service")}`;
    }
    out.push(e);
  }
  for (const { entry: d, dir } of dropIns) {
    if (options.emitFrom && !options.emitFrom.has(dir.path)) continue;
    const service = parseUnit((await readText(d.path, errors)) ?? "").get("Service");
    d.command = (service?.get("ExecStart") ?? []).join(" ; ");
    d.user = service?.get("User")?.at(-1) ?? options.user ?? "";
    out.push(d);
  }
  return out;
}

/** The state `systemctl list-unit-files` shows for a unit. */
function stateOf(
  f: Fragment,
  text: string,
  unit: Map<string, Map<string, string[]>>,
  links: ConfigLink[],
  inside: (hostPath: string) => boolean,
): string {
  const runtime = isRuntime(f.dir) ? "-runtime" : "";
  if (f.file === null || (f.file && text.trim() === "" && f.linkTarget === undefined))
    return `masked${runtime}`;
  if (f.linkTarget !== undefined && f.file && basename(f.file) !== f.name) return "alias";
  if (f.dir.role === "generator") return "generated";
  if (f.dir.role === "transient") return "transient";
  if (f.linkTarget !== undefined && f.file && !inside(f.file)) return `linked${runtime}`;
  const install = unit.get("Install");
  const aliases = new Set(words(install?.get("Alias")));
  const template = /^(.+)@\.(\w+)$/.exec(f.name);
  const isInstanceOf = (name: string) =>
    template !== null && name.startsWith(`${template[1]}@`) && name.endsWith(`.${template[2]}`);
  const named = links.filter(
    (l) =>
      (l.leadsTo === f.name || isInstanceOf(l.leadsTo)) &&
      (l.inDependencyDir ? l.name === f.name || isInstanceOf(l.name) : aliases.has(l.name)),
  );
  if (named.length) return named.every((l) => l.runtime) ? "enabled-runtime" : "enabled";
  const other = links.some((l) => l.leadsTo === f.name && l.name !== f.name);
  if (other) return "indirect";
  const rules = ["WantedBy", "RequiredBy", "UpheldBy", "Alias"].some(
    (k) => words(install?.get(k)).length > 0,
  );
  if (rules) return "disabled";
  if (words(install?.get("Also")).length) return "indirect";
  return "static";
}
