import { Command } from "commander";
import { VERSION } from "../common/version.js";

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

// Only what the command asks for is loaded (the build splits the console along these imports):
// `dragnet agents` needs neither X.509 nor NATS nor the modules' formatters.
const lazy: Record<string, () => Promise<void>> = {
  key: async () => (await import("./commands/key.js")).registerKeyCommand(program),
  release: async () => (await import("./commands/release.js")).registerReleaseCommand(program),
  enroll: async () => (await import("./commands/enroll.js")).registerEnrollCommand(program),
  alerts: async () => (await import("./commands/alerts.js")).registerAlertsCommand(program),
  evidence: async () => (await import("./commands/evidence.js")).registerEvidenceCommand(program),
  incident: async () => (await import("./commands/incident.js")).registerIncidentCommand(program),
  audit: async () => (await import("./commands/audit.js")).registerAuditCommand(program),
  exports: async () => (await import("./commands/exports.js")).registerExportsCommand(program),
  lab: async () => (await import("./commands/lab.js")).registerLabCommand(program),
  ui: async () => (await import("./commands/ui.js")).registerUiCommand(program),
};
// The agents command alone, without the subcommand a module adds to it (`agents upgrade`).
const agentsOnly = async () => (await import("./commands/agents.js")).registerAgentsCommand(program);

/** Every command: for help, and for the modules' commands and actions (they share the agents command). */
async function registerAll(): Promise<void> {
  const [
    { registerAgentsCommand },
    { registerActionCommand },
    { registerScheduleCommand },
    modules,
    output,
    sender,
  ] = await Promise.all([
    import("./commands/agents.js"),
    import("./commands/action.js"),
    import("./commands/schedule.js"),
    import("./modules/modules.gen.js"),
    import("./output/formatters.js"),
    import("./send.js"),
  ]);
  const rows = new output.ResultRows(modules.consoleModules);
  const send = sender.actionSender(rows);
  await lazy.key!();
  const agents = registerAgentsCommand(program);
  await lazy.release!();
  await lazy.enroll!();
  for (const module of Object.values(modules.consoleModules)) module.register({ program, agents, send });
  await lazy.alerts!();
  await lazy.evidence!();
  await lazy.incident!();
  registerActionCommand(program, rows, send);
  await lazy.audit!();
  registerScheduleCommand(program, modules.consoleModules);
  await lazy.exports!();
  await lazy.lab!();
  await lazy.ui!();
}

/** The command word: the first argument that is neither a global option nor its value. */
function commandWord(args: string[]): string | undefined {
  const withValue = new Set(["--home", "--key", "--coordinator", "--ca"]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (withValue.has(a)) i++;
    else if (!a.startsWith("-")) return a;
  }
  return undefined;
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--version") {
  process.stdout.write(`${VERSION}\n`);
} else {
  const word = commandWord(args);
  const help = args.includes("--help") || args.includes("-h");
  // `agents upgrade` is a module's (upgrade); `agents` and `agents revoke` are the agents command's.
  if (help)
    await registerAll(); // help lists every command, and every subcommand a module adds
  else if (word === "agents" && !args.includes("upgrade")) await agentsOnly();
  else if (word !== undefined && lazy[word]) await lazy[word]();
  else if (!(args.length === 1 && args[0] === "-V")) await registerAll();
  await program.parseAsync(process.argv);
}
