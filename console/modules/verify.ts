import type { Command } from "commander";
import type { VerifyParams, VerifyResult } from "../../proto/api.js";
import { addActionFlags, handle } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet verify`: which hosts have packaged files that no longer match
// their package's checksums (modified, missing), and executables or libraries
// under system paths that no package owns — the package database as the
// file-integrity baseline, so upgrades are not alerts.

const formatter: ModuleFormatter<VerifyResult> = {
  columns: [
    { key: "kind", header: "finding" },
    { key: "path", header: "path" },
    { key: "package", header: "package" },
    { key: "config", header: "conf" },
    { key: "expected", header: "expected" },
    { key: "actual", header: "actual" },
    { key: "sha256", header: "sha256" },
    { key: "size", header: "size" },
    { key: "mtime", header: "mtime" },
  ],
  rows: (r) => {
    const rows: Record<string, unknown>[] = r.findings.map((f) => ({
      kind: f.kind,
      path: f.path,
      package: f.package ? `${f.manager}:${f.package}` : "",
      config: f.config ? "conf" : "",
      algorithm: f.algorithm,
      expected: f.expected,
      actual: f.actual,
      sha256: f.sha256,
      size: f.kind === "missing" ? "" : f.size,
      mtime: f.mtimeMs ? isoTime(f.mtimeMs) : "",
    }));
    // The limit's cut, as a row of its own so no table reader misses it.
    if (r.omitted) rows.push({ kind: "omitted", path: `${r.omitted} more findings not sent` });
    return rows;
  },
};

interface VerifyFlags {
  package?: string;
  unowned?: string;
  unownedOnly?: boolean;
  includeConfig?: boolean;
  manager?: string;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("verify")
    .description(
      "packaged files changed or missing against their package's checksums (dpkg, rpm); unowned executables and libraries",
    )
    .option("--package <regex>", "only packages whose name matches")
    .option(
      "--unowned <dirs>",
      "comma-separated directories to search for executables/libraries no package owns",
    )
    .option("--unowned-only", "only the unowned search (no package checksums)")
    .option("--include-config", "report edited configuration files (conffiles) too")
    .option("--manager <dpkg|rpm>", "only this package manager's files");
  addActionFlags(cmd);
  // Hashing every packaged file takes a while on a busy host (about as long as dpkg --verify).
  cmd.options.find((o) => o.long === "--timeout")?.default("10m");
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet verify -t all --package '^(openssh-server|sudo|libpam.*)$'      # tampered authentication binaries
  dragnet verify -t 'hostname ~ "^web-"' --unowned /usr/bin,/usr/sbin,/usr/lib --unowned-only
  dragnet verify -t all --include-config --json`,
  );
  cmd.action(
    handle(async (flags: VerifyFlags & Parameters<SendAction>[1], command: Command) => {
      const params: VerifyParams = {
        package: flags.package ?? "",
        unowned: (flags.unowned ?? "")
          .split(",")
          .map((d) => d.trim())
          .filter(Boolean),
        unownedOnly: flags.unownedOnly ?? false,
        includeConfig: flags.includeConfig ?? false,
        manager: flags.manager ?? "",
      };
      return send(command, flags, nameWith("verify", params), [
        { module: { $case: "verify", value: params } },
      ]);
    }),
  );
}

export const verifyConsole = defineConsoleModule({
  name: "verify",
  commands: ["verify"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
