import { basename } from "node:path";
import type { Command } from "commander";
import { checkOperations } from "../../agent/modules/checks.js";
import { Operation } from "../../proto/api.js";
import {
  addActionFlags,
  globalsOf,
  handle,
  paramsError,
  readSmallFile,
  type SweepFlags,
} from "../cli-kit.js";
import { importMigAction } from "../mig-import.js";
import { formatOf, printable } from "../output/rows.js";
import type { SendAction } from "../send.js";

// `dragnet action import FILE.json [--submit]`: a MIG v2 action as a Dragnet
// action. Without --submit it only shows what it would send.

interface ImportFlags extends Omit<SweepFlags, "target"> {
  target?: string;
  submit?: boolean;
}

export function registerImportCommand(action: Command, send: SendAction): void {
  const cmd = action
    .command("import <file>")
    .description(
      "convert a MIG v2 action file (file, netstat and memory searches) into a Dragnet action; --submit sends it",
    )
    .option("--submit", "sign and send it (needs -t): without it, only show the conversion");
  addActionFlags(cmd, { targetRequired: false });
  cmd.addHelpText(
    "after",
    `
MIG's target is a SQL condition over its own database: it is shown, never run.
Give the Dragnet target yourself. Operations of modules Dragnet does not have
are listed and the import refused, rather than dropped.

Examples:
  dragnet action import sshd_backdoor.json                 # show the conversion
  dragnet action import sshd_backdoor.json -t 'os == "linux"' --submit`,
  );
  cmd.action(
    handle(async (file: string, flags: ImportFlags, command: Command) => {
      let raw: unknown;
      try {
        raw = JSON.parse(readSmallFile(file));
      } catch (err) {
        paramsError(`cannot read MIG action ${file}: ${(err as Error).message}`);
      }
      let imported: ReturnType<typeof importMigAction>;
      try {
        imported = importMigAction(raw, basename(file));
        checkOperations(imported.operations);
      } catch (err) {
        paramsError((err as Error).message);
      }
      for (const n of imported.notes) process.stderr.write(`dragnet: note: ${printable(n)}\n`);
      const note = imported.migTarget
        ? `MIG target (not run; give a Dragnet target with -t): ${imported.migTarget}`
        : "MIG target: none given";
      if (!flags.submit) {
        const globals = globalsOf(command);
        const shown = {
          name: imported.name,
          description: imported.description,
          migTarget: imported.migTarget,
          notes: imported.notes,
          target: flags.target ?? null,
          operations: imported.operations.map((op) => Operation.toJSON(op)),
        };
        if (formatOf(globals) === "json") {
          process.stdout.write(`${JSON.stringify(shown)}\n`);
        } else {
          process.stdout.write(
            `${printable(imported.name)}\n${printable(imported.description, true)}\n${printable(note)}\n` +
              `${JSON.stringify(shown.operations, null, 2)}\n` +
              `To send it: dragnet action import ${file} -t EXPR --submit\n`,
          );
        }
        return 0;
      }
      if (!flags.target) paramsError(`--submit needs a Dragnet target (-t EXPR). ${note}`);
      process.stderr.write(`${printable(note)}\n`);
      return send(command, { ...flags, target: flags.target }, imported.name, imported.operations, {
        options: {
          name: flags.actionName ?? imported.name,
          description: flags.description ?? imported.description,
        },
      });
    }),
  );
}
