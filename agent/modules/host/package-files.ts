import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { timeSlicer } from "../time-slice.js";

// Which package owns a file, and what the package says it should hash to:
// dpkg's file lists (info/<pkg>.list), checksums (info/<pkg>.md5sums),
// conffiles (the status file's Conffiles) and diversions; rpm's through `rpm
// -qa` when rpm has packages. Read by verify (owned files against their
// checksums), persistence (who owns a unit or crontab) and drift (was a change
// an upgrade?). One reading serves many lookups: a few tens of thousands of
// paths in memory, loaded once per operation.

const run = promisify(execFile);

/** What a package database says about one path. */
export interface OwnedFile {
  manager: "dpkg" | "rpm";
  package: string;
  /** The digest the package records, lower-case hex; empty for directories and unrecorded files. */
  digest: string;
  /** "md5" (dpkg) or rpm's algorithm ("sha256", "md5", "sha1"…). */
  algorithm: string;
  /** A configuration file (dpkg conffile, rpm %config): local edits are usual. */
  config: boolean;
}

export interface PackageFiles {
  /** The managers whose databases were read. */
  readonly managers: readonly string[];
  /** Problems reading them (one line each); lookups answer from what was read. */
  readonly errors: readonly string[];
  /** The package record for an absolute path on this host, following /bin → /usr/bin merges. */
  owner(path: string): OwnedFile | undefined;
  /** Every recorded file with a digest, as its package names it (after diversions). */
  files(): IterableIterator<[string, OwnedFile]>;
}

export interface PackageFilesOptions {
  /**
   * The root whose package databases are read and whose files they describe
   * (a mounted image, a test's tree); paths in and out stay host paths under
   * it. Default "/" (DRAGNET_PACKAGE_ROOT overrides it for the agent as a whole).
   */
  root?: string;
  /** Only this manager. */
  manager?: string;
  /**
   * Only these host paths are wanted (a handful of changed files): the
   * databases are searched for them instead of read whole, which costs a
   * fraction of the time and keeps nothing else in memory.
   */
  only?: readonly string[];
  /** Only packages whose name matches (verify --package): the others' files are not read. */
  packages?: RegExp;
  /** Aborts the reading (a command's timeout). */
  signal?: AbortSignal;
  /** rpm -qa is started only when this is true (default: when rpm is on PATH and root is "/"). */
  rpm?: boolean;
}

/** Debian's merged /usr: /bin, /sbin, /lib* are links into /usr, and packages name either. */
const MERGED = /^\/(?:usr\/)?(bin|sbin|lib|lib32|lib64|libx32)(\/.*)$/;

function aliasOf(path: string): string | undefined {
  const m = MERGED.exec(path);
  if (!m) return undefined;
  return path.startsWith("/usr/") ? `/${m[1]}${m[2]}` : `/usr/${m[1]}${m[2]}`;
}

export function packageRoot(root?: string): string {
  return root ?? process.env.DRAGNET_PACKAGE_ROOT ?? "/";
}

class Table implements PackageFiles {
  readonly managers: string[] = [];
  readonly errors: string[] = [];
  private readonly byPath = new Map<string, OwnedFile>();

  constructor(private readonly root: string) {}

  /** A host path for a path the package names (under the root when there is one). */
  private hostPath(path: string): string {
    return this.root === "/" ? path : join(this.root, path);
  }

  set(path: string, file: OwnedFile): void {
    const at = this.hostPath(path);
    const had = this.byPath.get(at);
    // A path several packages list (directories, shared docs): the one with a digest wins.
    if (!had || (!had.digest && file.digest)) this.byPath.set(at, file);
  }

  owner(path: string): OwnedFile | undefined {
    const direct = this.byPath.get(path);
    if (direct) return direct;
    const rel =
      this.root === "/" ? path : path.startsWith(`${this.root}/`) ? path.slice(this.root.length) : "";
    const alias = rel && aliasOf(rel);
    return alias ? this.byPath.get(this.hostPath(alias)) : undefined;
  }

  files(): IterableIterator<[string, OwnedFile]> {
    return this.byPath.entries();
  }
}

/** dpkg's diversions file: triples of lines (from, to, the diverting package or ":" for a local one). */
function parseDiversions(text: string): Map<string, { to: string; by: string }> {
  const lines = text.split("\n");
  const out = new Map<string, { to: string; by: string }>();
  for (let i = 0; i + 2 < lines.length; i += 3) out.set(lines[i]!, { to: lines[i + 1]!, by: lines[i + 2]! });
  return out;
}

/** "name" or "name:arch" from an info file's name, without its extension. */
const infoName = (file: string, ext: string) => file.slice(0, -ext.length).replace(/:.*$/, "");

/** The paths as packages name them (root-relative, both sides of the /usr merge, and what diversions move there). */
function packageNamesOf(
  hostPaths: readonly string[],
  root: string,
  diversions: Map<string, { to: string; by: string }>,
): Set<string> {
  const names = new Set<string>();
  for (const host of hostPaths) {
    const rel = root === "/" ? host : host.startsWith(`${root}/`) ? host.slice(root.length) : "";
    if (!rel) continue;
    names.add(rel);
    const alias = aliasOf(rel);
    if (alias) names.add(alias);
  }
  for (const [from, d] of diversions) if (names.has(d.to)) names.add(from);
  return names;
}

async function readDpkg(
  table: Table,
  root: string,
  signal: AbortSignal,
  only: readonly string[] | undefined,
  packages: RegExp | undefined,
): Promise<boolean> {
  const db = join(root, "var/lib/dpkg");
  let status: string;
  try {
    status = await readFile(join(db, "status"), "utf8");
  } catch {
    return false;
  }
  table.managers.push("dpkg");
  // Conffiles' checksums are in the status file (" /etc/x <md5>[ obsolete]"), not in md5sums.
  // An obsolete one is a package's no longer: another package's current one must not lose to it.
  const conffiles = new Map<string, string>();
  for (const m of status.matchAll(/^Conffiles:\n((?: .*\n?)*)/gm))
    for (const line of m[1]!.split("\n")) {
      const [path, md5 = "", flag] = line.trim().split(" ");
      if (path && flag !== "obsolete") conffiles.set(path, /^[0-9a-f]{32}$/.test(md5) ? md5 : "");
    }
  const diversions = parseDiversions(await readFile(join(db, "diversions"), "utf8").catch(() => ""));
  const placed = (path: string, pkg: string) => {
    const d = diversions.get(path);
    return d && d.by !== pkg ? d.to : path;
  };
  const info = join(db, "info");
  let names: string[];
  try {
    names = await readdir(info);
  } catch (err) {
    table.errors.push(`dpkg: ${(err as Error).message}`);
    return true;
  }
  const wanted = only && packageNamesOf(only, root, diversions);
  // A file that names none of the wanted paths is not split into lines at all.
  // A substring search per path pays for a handful of paths; past that, the lines are looked up.
  const needled = wanted && wanted.size <= 16;
  const md5Needles = needled ? [...wanted].map((p) => `  ${p.slice(1)}`) : undefined;
  const listNeedles = needled ? [...wanted] : undefined;
  const mentions = (text: string, needles: string[] | undefined) =>
    !needles || needles.some((n) => text.includes(n));
  const withDigest = new Set<string>();
  const slice = timeSlicer(signal);
  // Read synchronously in slices: thousands of small files, where a promise
  // per file costs three times the reading.
  const read = (n: string) => {
    try {
      return readFileSync(join(info, n), "utf8");
    } catch {
      return "";
    }
  };
  // Checksums first, so every file list's entries below only fill in what has none.
  for (const n of names) {
    if (!n.endsWith(".md5sums")) continue;
    const pkg = infoName(n, ".md5sums");
    if (packages && !packages.test(pkg)) continue;
    const text = read(n);
    if (!mentions(text, md5Needles)) continue;
    // A file that moved to another package stays in the old one's md5sums (dpkg rewrites only
    // its list): a checksum counts where the same package's list still names the path, as
    // dpkg --verify has it.
    const listed = new Set(read(`${n.slice(0, -".md5sums".length)}.list`).split("\n"));
    for (const line of text.split("\n")) {
      // "<32 hex>  <path without its leading slash>"
      if (line.length < 35 || line[32] !== " ") continue;
      const named = `/${line.slice(34)}`;
      if ((wanted && !wanted.has(named)) || !listed.has(named)) continue;
      const path = placed(named, pkg);
      withDigest.add(path);
      table.set(path, {
        manager: "dpkg",
        package: pkg,
        digest: line.slice(0, 32).toLowerCase(),
        algorithm: "md5",
        config: conffiles.has(path),
      });
    }
    await slice();
  }
  for (const n of names) {
    if (!n.endsWith(".list")) continue;
    const pkg = infoName(n, ".list");
    if (packages && !packages.test(pkg)) continue;
    const text = read(n);
    if (!mentions(text, listNeedles)) continue;
    for (const line of text.split("\n")) {
      if (!line.startsWith("/") || line === "/." || (wanted && !wanted.has(line))) continue;
      const path = placed(line, pkg);
      if (withDigest.has(path)) continue;
      table.set(path, {
        manager: "dpkg",
        package: pkg,
        digest: conffiles.get(path) ?? "",
        algorithm: "md5",
        config: conffiles.has(path),
      });
    }
    await slice();
  }
  return true;
}

/** rpm's FILEDIGESTALGO numbers (PGP hash algorithm ids). */
const RPM_ALGOS: Record<string, string> = {
  "1": "md5",
  "2": "sha1",
  "8": "sha256",
  "9": "sha384",
  "10": "sha512",
};
const RPM_CONFIG_FLAG = 1;

async function readRpm(
  table: Table,
  only: readonly string[] | undefined,
  packages: RegExp | undefined,
): Promise<void> {
  const wanted = only && packageNamesOf(only, "/", new Map());
  let stdout: string;
  try {
    ({ stdout } = await run(
      "rpm",
      [
        "-qa",
        "--queryformat",
        "[%{FILENAMES}\\t%{FILEDIGESTS}\\t%{FILEFLAGS}\\t%{NAME}\\t%{FILEDIGESTALGO}\\n]",
      ],
      { maxBuffer: 512 * 1024 * 1024, timeout: 120_000 },
    ));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      table.errors.push(`rpm: ${(err as Error).message.slice(0, 300)}`);
    return;
  }
  table.managers.push("rpm");
  for (const line of stdout.split("\n")) {
    const [path, digest = "", flags = "0", pkg = "", algo = "8"] = line.split("\t");
    if (!path?.startsWith("/") || (wanted && !wanted.has(path)) || (packages && !packages.test(pkg)))
      continue;
    table.set(path, {
      manager: "rpm",
      package: pkg,
      digest: digest.toLowerCase(),
      // A package without FILEDIGESTALGO ("(none)") is an old one: rpm's default then is MD5.
      algorithm: RPM_ALGOS[algo] ?? "md5",
      config: (Number(flags) & RPM_CONFIG_FLAG) !== 0,
    });
  }
}

/** Reads the package databases under the root: dpkg's files directly, rpm's through rpm itself. */
export async function loadPackageFiles(options: PackageFilesOptions = {}): Promise<PackageFiles> {
  const root = packageRoot(options.root);
  const table = new Table(root);
  if (!options.manager || options.manager === "dpkg")
    await readDpkg(
      table,
      root,
      options.signal ?? new AbortController().signal,
      options.only,
      options.packages,
    );
  const rpm = options.rpm ?? root === "/";
  if (rpm && (!options.manager || options.manager === "rpm"))
    await readRpm(table, options.only, options.packages);
  return table;
}

/** Changes whenever dpkg installs, removes or diverts anything. */
async function dpkgKey(root: string): Promise<string> {
  const db = join(root, "var/lib/dpkg");
  const parts = await Promise.all(
    ["status", "info", "diversions"].map((p) =>
      stat(join(db, p)).then(
        (s) => `${s.mtimeMs}:${s.size}`,
        () => "-",
      ),
    ),
  );
  return parts.join("|");
}

let directories: { root: string; key: string; dirs: Promise<ReadonlySet<string> | undefined> } | undefined;

/**
 * The directory of every path dpkg's packages list (and where diversions put
 * them), as host paths: a file in none of them is no package's, and needs no
 * search. Kept (some thousands of paths) until dpkg's database changes.
 * Undefined when it cannot tell: no dpkg, or rpm has packages too.
 */
export async function packagedDirectories(signal?: AbortSignal): Promise<ReadonlySet<string> | undefined> {
  const root = packageRoot();
  const key = await dpkgKey(root);
  if (directories?.root !== root || directories.key !== key) {
    directories = { root, key, dirs: readDirectories(root, signal) };
    // A failed reading is not kept.
    directories.dirs.catch(() => {
      directories = undefined;
    });
  }
  return directories.dirs;
}

async function readDirectories(root: string, signal?: AbortSignal): Promise<ReadonlySet<string> | undefined> {
  const info = join(root, "var/lib/dpkg/info");
  if (root === "/" && (await rpmHasPackages())) return undefined;
  let names: string[];
  try {
    names = (await readdir(info)).filter((n) => n.endsWith(".list"));
  } catch {
    return undefined;
  }
  const dirs = new Set<string>();
  const add = (dir: string) => {
    dirs.add(root === "/" ? dir : join(root, dir));
    const alias = aliasOf(`${dir}/`)?.slice(0, -1);
    if (alias) dirs.add(root === "/" ? alias : join(root, alias));
  };
  const diversions = parseDiversions(
    await readFile(join(root, "var/lib/dpkg/diversions"), "utf8").catch(() => ""),
  );
  for (const d of diversions.values()) add(dirname(d.to));
  const slice = timeSlicer(signal ?? new AbortController().signal);
  for (const n of names) {
    let text: string;
    try {
      text = readFileSync(join(info, n), "utf8");
    } catch {
      continue;
    }
    let last = "";
    for (const line of text.split("\n")) {
      const slash = line.lastIndexOf("/");
      if (slash <= 0) continue;
      const dir = line.slice(0, slash);
      if (dir !== last) add(dir);
      last = dir;
    }
    await slice();
  }
  return dirs;
}

async function rpmHasPackages(): Promise<boolean> {
  try {
    const { stdout } = await run("rpm", ["-qa", "--queryformat", "%{NAME}\\n"], { timeout: 60_000 });
    return stdout.trim().length > 0;
  } catch {
    return false;
  }
}

/** "dpkg:openssl", how results name an owning package. */
export const packageLabel = (f: OwnedFile): string => `${f.manager}:${f.package}`;
