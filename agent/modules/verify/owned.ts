import type { VerifyFinding } from "../../../proto/mod.js";
import { digestFile, HASH_CHUNK } from "../host/digest-file.js";
import type { OwnedFile, PackageFiles } from "../host/package-files.js";
import { type HashJob, hashInWorkers } from "./hash-workers.js";

// Owned files against their package's recorded digests, as `dpkg --verify`
// (and `rpm -V`'s digest test) do: "missing" when a path the package lists is
// gone (directories too, as dpkg reports them), "modified" when a file's
// content hashes to something else than its recorded digest. Symlinks and
// directories carry no digest; configuration files are left out unless asked
// (local edits to them are the norm).

export interface OwnedCheck {
  findings: VerifyFinding[];
  packages: number;
  files: number;
  errors: string[];
}

export interface OwnedOptions {
  packageRegex?: RegExp;
  includeConfig: boolean;
  signal: AbortSignal;
}

const finding = (path: string, kind: string, f: OwnedFile): VerifyFinding => ({
  path,
  kind,
  package: f.package,
  manager: f.manager,
  algorithm: f.algorithm,
  expected: f.digest,
  actual: "",
  config: f.config,
  sha256: "",
  size: 0,
  mtimeMs: 0,
});

export async function checkOwnedFiles(files: PackageFiles, options: OwnedOptions): Promise<OwnedCheck> {
  const owned: [string, OwnedFile][] = [];
  const packages = new Set<string>();
  for (const [path, f] of files.files()) {
    if (options.packageRegex && !options.packageRegex.test(f.package)) continue;
    packages.add(`${f.manager}:${f.package}`);
    if (f.config && !options.includeConfig) continue;
    owned.push([path, f]);
  }
  // Paths without a digest (directories, links) are only checked for being there.
  const jobs: HashJob[] = owned.map(([path, f]) => [path, f.digest ? f.algorithm : ""]);
  const outcomes = await hashInWorkers(jobs, options.signal);
  const out: OwnedCheck = { findings: [], packages: packages.size, files: 0, errors: [] };
  for (let i = 0; i < owned.length; i++) {
    const [path, f] = owned[i]!;
    const o = outcomes[i]!;
    if (o.file === undefined) {
      // ENOTDIR: a directory on the way became a file; the owned path is gone all the same.
      if (o.error === "ENOENT" || o.error === "ENOTDIR") out.findings.push(finding(path, "missing", f));
      else out.errors.push(`${path}: ${o.message}`);
      continue;
    }
    if (!f.digest || !o.file) continue;
    if (o.error) {
      out.errors.push(`${path}: ${o.message}`);
      continue;
    }
    out.files++;
    if (o.digest === f.digest) continue;
    const changed = finding(path, "modified", f);
    changed.actual = o.digest ?? "";
    changed.size = o.size ?? 0;
    changed.mtimeMs = o.mtimeMs ?? 0;
    out.findings.push(changed);
  }
  // The SHA-256 of what changed, for the investigator to look up: few files, a second read each.
  const buffer = Buffer.allocUnsafe(HASH_CHUNK);
  for (const c of out.findings) {
    if (c.kind !== "modified") continue;
    if (options.signal.aborted) throw options.signal.reason;
    c.sha256 = await digestFile(c.path, ["sha256"], buffer).then(
      (d) => d.digests[0]!,
      () => "",
    );
  }
  return out;
}
