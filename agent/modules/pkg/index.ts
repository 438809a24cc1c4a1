import { execFile } from "node:child_process";
import { readFile, stat } from "node:fs/promises";
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
  for (const para of text.split(/\n\n+/)) {
    const field = (name: string) => new RegExp(`^${name}: (.*)$`, "m").exec(para)?.[1]?.trim() ?? "";
    const name = field("Package");
    const status = field("Status").split(" ")[2] ?? "";
    // Purged packages stay in the file as "not-installed": dpkg-query -W leaves them out too.
    if (!name || status === "not-installed") continue;
    const version = field("Version");
    const architecture = field("Architecture");
    out.push({
      manager: "dpkg",
      name,
      version,
      architecture,
      source: field("Source").replace(/\s*\(.*\)$/, "") || name,
      status,
      installedAtMs: 0,
    });
    await slice();
  }
  // When it was installed or upgraded: dpkg rewrites the package's file list then.
  await Promise.all(
    out.map(async (p) => {
      for (const list of [`${p.name}:${p.architecture}.list`, `${p.name}.list`]) {
        const st = await stat(`${DPKG_INFO}/${list}`).catch(() => undefined);
        if (st) {
          p.installedAtMs = Math.round(st.mtimeMs);
          return;
        }
      }
    }),
  );
  return out;
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
    for (const [manager, read, compare] of sources) {
      if (p.manager && p.manager !== manager) continue;
      let packages: Package[] | undefined;
      try {
        packages = await read();
      } catch (err) {
        result.errors.push(`${manager}: ${(err as Error).message.slice(0, 300)}`);
        continue;
      }
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
