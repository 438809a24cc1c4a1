import { Command } from "commander";
import { VERSION } from "../common/mod.js";
import { registerActionCommand } from "./commands/action.js";
import { registerAgentsCommand } from "./commands/agents.js";
import { registerAlertsCommand } from "./commands/alerts.js";
import { registerAuditCommand } from "./commands/audit.js";
import { registerEnrollCommand } from "./commands/enroll.js";
import { registerEvidenceCommand } from "./commands/evidence.js";
import { registerExportsCommand } from "./commands/exports.js";
import { registerIncidentCommand } from "./commands/incident.js";
import { registerKeyCommand } from "./commands/key.js";
import { registerLabCommand } from "./commands/lab.js";
import { registerReleaseCommand } from "./commands/release.js";
import { registerScheduleCommand } from "./commands/schedule.js";
import { registerUiCommand } from "./commands/ui.js";
import { consoleModules } from "./modules/modules.gen.js";
import { ResultRows } from "./output/formatters.js";
import { actionSender } from "./send.js";

// The investigator's CLI. Each command registers itself (flags, action,
// renderer): every module's from its console module (./modules/), in the
// Operation oneof's order, the others from ./commands/. Global options say
// where the coordinator and key are and how to print.

const program = new Command("dragnet")
  .description("Dragnet: ask a fleet of endpoints signed questions and get answers in seconds")
  // `--version` is also a flag of `release publish` and `agents upgrade` (the release's):
  // the program's own version answers to -V, and to --version only as the one argument.
  .version(VERSION, "-V")
  .option("--home <dir>", "console home: console.json, keys, lab (default $DRAGNET_HOME or ~/.dragnet)")
  .option("--key <file>", "investigator key to sign with (default from HOME/console.json)")
  .option("--coordinator <host:port>", "coordinator API address (default from HOME/console.json)")
  .option("--ca <file>", "CA certificate of the coordinator's TLS certificate")
  .option("--json", "one JSON object per line (NDJSON)")
  .option("--csv", "CSV with a header line")
  .showHelpAfterError()
  .addHelpText(
    "after",
    `
Exit status: 0 when something was found, 1 when nothing was, 2 on error
(nothing found while some agents failed or refused is an error: the answer is incomplete),
3 when the action waits for another investigator's approval (nothing was sent yet).`,
  );

// `dragnet … | head`: the reader has what it wanted; stop quietly, as grep does.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
}

// Before the commands are added: subcommands copy this setting when they are created.
program.exitOverride((err) => {
  // Usage errors (unknown flag, missing argument) exit 2 like every other error.
  process.exit(err.exitCode === 0 ? 0 : 2);
});

const rows = new ResultRows(consoleModules);
const send = actionSender(rows);
registerKeyCommand(program);
const agents = registerAgentsCommand(program);
registerReleaseCommand(program);
registerEnrollCommand(program);
for (const module of Object.values(consoleModules)) module.register({ program, agents, send });
registerAlertsCommand(program);
registerEvidenceCommand(program);
registerIncidentCommand(program);
registerActionCommand(program, rows, send);
registerAuditCommand(program);
registerScheduleCommand(program, consoleModules);
registerExportsCommand(program);
registerLabCommand(program);
registerUiCommand(program);

if (process.argv.length === 3 && process.argv[2] === "--version") {
  process.stdout.write(`${VERSION}\n`);
} else {
  await program.parseAsync(process.argv);
}
