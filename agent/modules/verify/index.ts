import type { VerifyResult } from "../../../proto/mod.js";
import { absolutePath, optionalRegex } from "../check-kit.js";
import { boundErrors } from "../error-list.js";
import { loadPackageFiles, packageRoot } from "../host/package-files.js";
import { defineModule } from "../registry.js";
import { checkVerify } from "./check.js";
import { checkOwnedFiles } from "./owned.js";
import { findUnowned } from "./unowned.js";

// `verify`: packaged files against the checksums their package recorded
// (dpkg's md5sums and conffile digests, rpm's file digests) — what was
// modified or removed since the package put it there — and, with `unowned`,
// executables and libraries under system paths that no package owns.

/** Findings sent at most (each a few hundred bytes: well under a message's 1 MB). */
export const MAX_FINDINGS = 2000;

export const verifyModule = defineModule({
  name: "verify",
  check: checkVerify,
  async run(p, ctx) {
    const root = packageRoot();
    // The unowned search needs every package's files; the owned check only the chosen packages'.
    const packages = p.unowned.length ? undefined : optionalRegex("verify: package regex", p.package);
    const files = await loadPackageFiles({
      root,
      manager: p.manager || undefined,
      packages,
      signal: ctx.signal,
    });
    const result: VerifyResult = {
      findings: [],
      managers: [...files.managers],
      packagesChecked: 0,
      filesChecked: 0,
      unownedScanned: 0,
      errors: [...files.errors],
      omitted: 0,
    };
    if (!p.unownedOnly) {
      const owned = await checkOwnedFiles(files, {
        packageRegex: optionalRegex("verify: package regex", p.package),
        includeConfig: p.includeConfig,
        signal: ctx.signal,
      });
      owned.findings.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      result.findings = owned.findings.slice(0, MAX_FINDINGS);
      result.omitted += owned.findings.length - result.findings.length;
      result.packagesChecked = owned.packages;
      result.filesChecked = owned.files;
      result.errors.push(...owned.errors);
    }
    if (p.unowned.length) {
      const dirs = p.unowned.map((d) => absolutePath(d)!);
      const unowned = await findUnowned(dirs, root, files, MAX_FINDINGS - result.findings.length, ctx.signal);
      unowned.findings.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      result.findings.push(...unowned.findings);
      result.omitted += unowned.omitted;
      result.unownedScanned = unowned.scanned;
      result.errors.push(...unowned.errors);
    }
    result.errors = boundErrors(result.errors);
    return { found: result.findings.length > 0 || result.omitted > 0, result };
  },
});
