import { execFile } from "node:child_process";
import { statSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { promisify } from "node:util";
import type { Package, PkgResult } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";
import { defineModule } from "../registry.js";
import { timeSlicer } from "../time-slice.js";
import { checkPkg, parseVersionFilter } from "./check.js";
import { compareDebian, compareRpm, versionMatches } from "./versions.js";

// `pkg`: installed packages, read from each package manager's own database —
// dpkg's status file (parsed here: no process started), rpm's through `rpm
// -qa` — filtered by name and by a version comparison in that manager's own
// ordering.

const run = promisify(execFile);
const DPKG_STATUS = "/var/lib/dpkg/status";
const DPKG_INFO = "/var/lib/dpkg/info";

/** The status file's fields a package list needs. */
const WANTED = new Set(["Package", "Status", "Version", "Architecture", "Source"]);

/** dpkg's status file, paragraph by paragraph: the fields a package list needs. */
async function dpkgPackages(signal: AbortSignal): Promise<Package[] | undefined> {
  let text: string;
  try {
    text = await readFile(DPKG_STATUS, "utf8");
  } catch {
    return undefined; // no dpkg here
  }
  const slice = timeSlicer(signal);
  const out: Package[] = [];
  const lists = new Set(await readdir(DPKG_INFO).catch(() => []));
  let fields = new Map<string, string>();
  const finish = () => {
    const name = fields.get("Package") ?? "";
    const status = (fields.get("Status") ?? "").split(" ")[2] ?? "";
    // Purged packages stay in the file as "not-installed": dpkg-query -W leaves them out too.
    if (name && status !== "not-installed") {
      const architecture = fields.get("Architecture") ?? "";
      out.push({
        manager: "dpkg",
        name,
        version: fields.get("Version") ?? "",
        architecture,
        source: (fields.get("Source") ?? "").replace(/\s*\(.*\)$/, "") || name,
        status,
        installedAtMs: installedAt(lists, name, architecture),
      });
    }
    fields = new Map();
  };
  // One pass over the lines (continuation lines, which start with a space, are no field of ours).
  for (const line of text.split("\n")) {
    if (line === "") {
      if (fields.size) finish();
      await slice();
      continue;
    }
    const colon = line.indexOf(": ");
    if (colon > 0 && line[0] !== " ") {
      const key = line.slice(0, colon);
      if (WANTED.has(key)) fields.set(key, line.slice(colon + 2).trim());
    }
  }
  if (fields.size) finish();
  return out;
}

/** When it was installed or upgraded: dpkg rewrites the package's file list then (0 when there is none). */
function installedAt(lists: ReadonlySet<string>, name: string, architecture: string): number {
  // "name:arch.list" for Multi-Arch: same packages, "name.list" for the others.
  for (const list of [`${name}.list`, `${name}:${architecture}.list`]) {
    if (!lists.has(list)) continue;
    try {
      return Math.round(statSync(`${DPKG_INFO}/${list}`).mtimeMs);
    } catch {
      return 0; // removed meanwhile
    }
  }
  return 0;
}

/** rpm's database through rpm itself, when rpm is installed. */
async function rpmPackages(): Promise<Package[] | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await run(
      "rpm",
      [
        "-qa",
        "--queryformat",
        "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{INSTALLTIME}\\n",
      ],
      { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 },
    ));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  return stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [name = "", evr = "", architecture = "", source = "", installed = "0"] = line.split("\t");
      return {
        manager: "rpm",
        name,
        // Epoch 0 is how rpm prints a version without one.
        version: evr.replace(/^0:/, ""),
        architecture,
        source: source === "(none)" ? "" : source.replace(/\.src\.rpm$/, ""),
        status: "installed",
        installedAtMs: Number(installed) * 1000,
      };
    });
}

export const pkgModule = defineModule({
  name: "pkg",
  check: checkPkg,
  async run(p, ctx) {
    const name = optionalRegex("pkg: name regex", p.name);
    const filter = p.version ? parseVersionFilter(p.version) : undefined;
    const result: PkgResult = { packages: [], managers: [], errors: [] };
    const sources: [string, () => Promise<Package[] | undefined>, (a: string, b: string) => number][] = [
      ["dpkg", () => dpkgPackages(ctx.signal), compareDebian],
      ["rpm", rpmPackages, compareRpm],
    ];
    const wanted = sources.filter(([manager]) => !p.manager || p.manager === manager);
    // Both at once: rpm's process starts while dpkg's file is read.
    const read = await Promise.allSettled(wanted.map(([, readPackages]) => readPackages()));
    for (const [i, [manager, , compare]] of wanted.entries()) {
      const outcome = read[i]!;
      if (outcome.status === "rejected") {
        result.errors.push(`${manager}: ${(outcome.reason as Error).message.slice(0, 300)}`);
        continue;
      }
      const packages = outcome.value;
      if (!packages) continue;
      result.managers.push(manager);
      for (const pkg of packages) {
        if (name && !name.test(pkg.name)) continue;
        if (filter && !versionMatches(filter, pkg.version, compare)) continue;
        result.packages.push(pkg);
      }
    }
    result.packages.sort(
      (a, b) => a.name.localeCompare(b.name) || a.architecture.localeCompare(b.architecture),
    );
    return { found: result.packages.length > 0, result };
  },
});
