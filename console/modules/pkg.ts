import type { Command } from "commander";
import type { Operation, PkgParams, PkgResult } from "../../proto/api.js";
import { addActionFlags, handle } from "../cli-kit.js";
import { type Notes, SearchFormatError } from "../mig-search.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet pkg`: which hosts run which package, at which version — compared in
// each package manager's own ordering (Debian's epochs and "~", rpm's rpmvercmp).

const formatter: ModuleFormatter<PkgResult> = {
  columns: [
    { key: "name", header: "package" },
    { key: "version", header: "version" },
    { key: "architecture", header: "arch" },
    { key: "manager", header: "manager" },
    { key: "status", header: "status" },
    { key: "installed", header: "installed" },
    { key: "source", header: "source" },
  ],
  rows: (r) =>
    r.packages.map((p) => ({
      name: p.name,
      version: p.version,
      architecture: p.architecture,
      manager: p.manager,
      status: p.status,
      installed: isoTime(p.installedAtMs),
      source: p.source,
    })),
};

interface PkgFlags {
  name?: string;
  version?: string;
  manager?: string;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("pkg")
    .description(
      "installed packages (dpkg, rpm): by name regex and a version comparison in the manager's ordering",
    )
    .option("--name <regex>", "regex on the package name")
    .option("--version <op+version>", "e.g. '<3.0.11-1~deb12u1', '>=2:1.0', '=1.2-3', '!=1.0'")
    .option("--manager <dpkg|rpm>", "only this package manager's packages");
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet pkg -t all --name '^openssl$' --version '<3.0.11-1~deb12u1'   # hosts still on a vulnerable OpenSSL
  dragnet pkg -t 'tags.role == "web"' --name '^(nginx|apache2)$'`,
  );
  cmd.action(
    handle(async (flags: PkgFlags & Parameters<SendAction>[1], command: Command) => {
      const params: PkgParams = {
        name: flags.name ?? "",
        version: flags.version ?? "",
        manager: flags.manager ?? "",
      };
      return send(command, flags, nameWith("pkg", params), [{ module: { $case: "pkg", value: params } }]);
    }),
  );
}

/** MIG's pkg parameters: {"pkgmatch": {"matches": [regex, …]}}, each a pkg operation. */
function fromMig(parameters: unknown, notes: Notes): Operation[] {
  const p = parameters as { pkgmatch?: { matches?: unknown } } | null;
  if (typeof p !== "object" || p === null) throw new SearchFormatError("pkg parameters are not an object");
  for (const key of Object.keys(p))
    if (key !== "pkgmatch") throw new SearchFormatError(`pkg parameter "${key}" has no Dragnet equivalent`);
  const matches = p.pkgmatch?.matches;
  if (!Array.isArray(matches) || !matches.length || matches.some((m) => typeof m !== "string"))
    throw new SearchFormatError('pkg parameters have no "pkgmatch": {"matches": [regex, …]}');
  if (matches.length > 1)
    notes.push(`pkg: ${matches.length} name regexes become ${matches.length} pkg operations`);
  return (matches as string[]).map((name) => ({
    module: { $case: "pkg", value: { name, version: "", manager: "" } },
  }));
}

export const pkgConsole = defineConsoleModule({
  name: "pkg",
  commands: ["pkg"],
  register: ({ program, send }) => register(program, send),
  formatter,
  mig: { module: "pkg", convert: fromMig },
});
