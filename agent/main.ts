import { Command, Option } from "commander";
import { createLogger, describeError, VERSION } from "../common/mod.js";
import { Agent } from "./agent.js";
import { loadAgentConfig } from "./config.js";
import { enroll } from "./enroll.js";
import {
  describeStep,
  install,
  installableExecutable,
  PATHS,
  planInstall,
  restartIfInstalled,
  uninstall,
} from "./install.js";
import { describeStatus, stateDirOf } from "./local-status.js";
import { rollBackAbandoned, watchUpgrade } from "./modules/upgrade/handoff.js";
import { startWatchdogPings } from "./system-tools.js";

// The agent executable. Node variables in the environment must not change
// how an agent that runs as root behaves: the executable ignores NODE_OPTIONS
// (scripts/build.mjs neutralises it in the binary) and the other NODE_*
// variables are dropped here before anything reads them.
for (const name of Object.keys(process.env)) {
  if (name.startsWith("NODE_")) delete process.env[name];
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

const program = new Command("dragnet-agent")
  .description("Dragnet endpoint agent: answers signed queries from the coordinator over NATS")
  .version(VERSION, "-V, --version")
  .showHelpAfterError();

program
  .command("run", { isDefault: true })
  .description("connect to NATS and answer commands (the default)")
  .option("-c, --config <file>", "JSON configuration file")
  .option("--nats <url>", "NATS server URL (repeat for a cluster)", collect)
  .option("--nats-ca <file>", "CA certificate of the NATS servers (TLS)")
  .option("--nats-creds <file>", "this agent's NATS credentials (.creds)")
  .option("--nats-insecure", "plaintext NATS (explicit opt-out of TLS, for debugging)")
  .option("--state-dir <dir>", "directory for the agent id and its state")
  .option("--keyring <file>", "trusted investigators (JSON keyring)")
  .option("--tag <key=value>", "a tag to report (repeatable)", collect)
  .option("--hostname <name>", "report this hostname instead of the system's")
  .addOption(
    new Option("--heartbeat-interval <ms>", "milliseconds between heartbeats").argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0)
        throw new Error(`--heartbeat-interval takes milliseconds, not "${v}"`);
      return n;
    }),
  )
  .addOption(new Option("--log-level <level>").choices(["debug", "info", "warn", "error"]))
  .action(async (opts) => {
    const log = createLogger("agent", { level: opts.logLevel });
    let agent: Agent;
    let stopping = false;
    try {
      const config = loadAgentConfig(opts);
      agent = new Agent(config, {
        log: createLogger("agent", { level: config.logLevel }),
        onRestart: (reason) => void stop(reason),
      });
    } catch (err) {
      process.stderr.write(`dragnet-agent: ${describeError(err)}\n`);
      process.exit(2);
    }
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info("stopping", { signal });
      const force = setTimeout(() => process.exit(1), 10_000);
      force.unref();
      await agent.stop();
      process.exit(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
    await agent.start();
    startWatchdogPings(log);
  });

program
  .command("install")
  .description(
    "install this executable as a service: /usr/local/bin, /etc/dragnet (config, keyring, credentials), /var/lib/dragnet, a systemd unit",
  )
  .requiredOption(
    "-c, --config <file>",
    "the agent configuration to install (the files it names are copied with it)",
  )
  .option("--root <dir>", "install under this directory instead of / (images, tests)", "/")
  .option("--dry-run", "print what would be written, and write nothing")
  .action((opts: { config: string; root: string; dryRun?: boolean }) => {
    const steps = planInstall(opts.config, installableExecutable());
    if (opts.dryRun) {
      for (const s of steps) process.stdout.write(`${describeStep(s, opts.root)}\n`);
      return;
    }
    if (opts.root === "/" && process.getuid?.() !== 0) throw new Error("install needs root (or --root DIR)");
    for (const line of install(steps, opts.root)) process.stdout.write(`${line}\n`);
  });

program
  .command("uninstall")
  .description("remove what install wrote (the state directory stays unless --purge)")
  .option("--root <dir>", "the directory install used", "/")
  .option("--purge", "also remove the state directory (actions run, baselines, the quarantine vault)")
  .action((opts: { root: string; purge?: boolean }) => {
    for (const line of uninstall(opts.root, opts.purge ?? false)) process.stdout.write(`${line}\n`);
  });

program
  .command("enroll")
  .description(
    "join the fleet with an enrolment token: makes this agent's NATS key pair, receives its credentials and tags, and updates the config",
  )
  .requiredOption("--token <token>", "the token from `dragnet enroll token create`")
  .requiredOption(
    "--coordinator-nats <url>",
    "the fleet's NATS server (repeat or comma-separate for a cluster)",
    (v: string, prev: string[] = []) => [...prev, ...v.split(",").filter(Boolean)],
  )
  .option("-c, --config <file>", "the agent configuration to update", PATHS.config)
  .action(async (opts: { token: string; coordinatorNats: string[]; config: string }) => {
    const done = await enroll({ config: opts.config, token: opts.token, natsUrls: opts.coordinatorNats });
    process.stdout.write(
      [
        `enrolled as agent ${done.agentId}`,
        `tags ${
          Object.entries(done.tags)
            .map(([k, v]) => `${k}=${v}`)
            .join(", ") || "(none)"
        }`,
        `wrote ${done.creds} (NATS credentials, 0600; the key was made here and never left this host)`,
        `updated ${done.config}`,
        restartIfInstalled(),
        "",
      ].join("\n"),
    );
  });

program
  .command("upgrade-watch", { hidden: true })
  .description("(started by an upgrade) start the new version and roll back unless it comes back healthy")
  .requiredOption("--state-dir <dir>", "the agent's state directory")
  .action(async (opts: { stateDir: string }) => {
    const log = createLogger("upgrade-watch");
    const outcome = await watchUpgrade(opts.stateDir, (line) => log.info(line));
    process.exit(outcome === "healthy" ? 0 : 1);
  });

program
  .command("upgrade-check", { hidden: true })
  .description("(the unit runs it before starting) roll back an upgrade whose watchdog a restart ended")
  .requiredOption("--state-dir <dir>", "the agent's state directory")
  .action((opts: { stateDir: string }) => {
    process.stdout.write(`upgrade-check: ${rollBackAbandoned(opts.stateDir)}\n`);
  });

program
  .command("status")
  .description(
    "what the local agent is doing: id, connection, last heartbeat, isolation, version, running commands",
  )
  .option("-c, --config <file>", "its configuration (for the state directory)", PATHS.config)
  .option("--state-dir <dir>", "its state directory")
  .action((opts: { config: string; stateDir?: string }) => {
    const stateDir = opts.stateDir ?? stateDirOf(opts.config);
    process.stdout.write(describeStatus(stateDir));
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`dragnet-agent: ${describeError(err)}\n`);
  process.exit(2);
});
