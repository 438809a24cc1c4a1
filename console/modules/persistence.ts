import type { Command } from "commander";
import { PERSISTENCE_KINDS } from "../../agent/modules/checks.js";
import type { PersistenceParams, PersistenceResult } from "../../proto/api.js";
import { addActionFlags, handle } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import { isoTime } from "../output/rows.js";
import { nameWith, type SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet persistence`: every place that makes something start on the
// targeted hosts, each with its file's hash and its owning package — and
// "UNOWNED" in the owner column where no package put it there, the first
// thing an implant hunter reads.

const formatter: ModuleFormatter<PersistenceResult> = {
  columns: [
    { key: "kind", header: "kind" },
    { key: "owner", header: "owner" },
    { key: "flags", header: "flags" },
    { key: "name", header: "name" },
    { key: "state", header: "state" },
    { key: "user", header: "user" },
    { key: "schedule", header: "when" },
    { key: "command", header: "command" },
    { key: "path", header: "path" },
    { key: "sha256", header: "sha256" },
    { key: "mtime", header: "mtime" },
  ],
  rows: (r) => {
    const rows: Record<string, unknown>[] = r.entries.map((e) => ({
      kind: e.kind,
      // Upper case so unowned entries stand out in a column of package names.
      owner: e.unowned ? "UNOWNED" : e.package,
      package: e.package,
      unowned: e.unowned,
      flags: e.flags.join(","),
      name: e.name,
      state: e.state,
      user: e.user,
      schedule: e.schedule,
      command: e.command,
      path: e.path,
      sha256: e.sha256,
      mtime: e.mtimeMs ? isoTime(e.mtimeMs) : "",
    }));
    if (r.omitted) rows.push({ kind: "omitted", name: `${r.omitted} more entries not sent` });
    return rows;
  },
};

interface PersistenceFlags {
  unowned?: boolean;
  kind?: string;
  match?: string;
}

function register(program: Command, send: SendAction): void {
  const cmd = program
    .command("persistence")
    .description(
      "what starts things: cron, at, systemd units and timers, init.d, rc.local, shell startup files, ld.so.preload, udev RUN, kernel modules",
    )
    .option("--unowned", "only entries whose file no package owns (the hunt for implants)")
    .option("--kind <kinds>", `comma-separated: ${PERSISTENCE_KINDS.join(", ")}`)
    .option("--match <regex>", "regex on the entry's path, name or command");
  addActionFlags(cmd);
  cmd.addHelpText(
    "after",
    `
Examples:
  dragnet persistence -t all --unowned                          # what no package put there
  dragnet persistence -t all --kind systemd,cron --match 'curl|wget|/tmp/|/dev/shm/'
  dragnet persistence -t 'hostname ~ "^db-"' --kind kernel_module,ld_preload --json`,
  );
  cmd.action(
    handle(async (flags: PersistenceFlags & Parameters<SendAction>[1], command: Command) => {
      const params: PersistenceParams = {
        unowned: flags.unowned ?? false,
        kinds: (flags.kind ?? "")
          .split(",")
          .map((k) => k.trim())
          .filter(Boolean),
        match: flags.match ?? "",
      };
      return send(command, flags, nameWith("persistence", params), [
        { module: { $case: "persistence", value: params } },
      ]);
    }),
  );
}

export const persistenceConsole = defineConsoleModule({
  name: "persistence",
  commands: ["persistence"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
