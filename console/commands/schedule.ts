import { Command } from "commander";
import { Codes, DragnetError, formatDuration, newId, signAction } from "../../common/mod.js";
import { checkSchedule, MAX_SCHEDULE_MS, MIN_EVERY_MS, signScheduleStop } from "../../common/schedule.js";
import type { ScheduleInfo } from "../../proto/api.js";
import { duration, globalsOf, handle, nonNegativeInt, outcome, withApi } from "../cli-kit.js";
import { openClient } from "../home.js";
import type { ConsoleModules } from "../modules/console-module.js";
import { formatOf, isoTime, printable, RowWriter } from "../output/rows.js";
import { actionBodyOf, type SendAction } from "../send.js";

// `dragnet schedule create|list|show|stop`: a sweep signed once to run every
// interval for a while. `schedule create --every 1h --for 14d --name N` is
// followed by any investigation module's command and flags, as for a sweep
// (`… file -t all --name '^x$' --path /var/www`); options before the module
// are the schedule's, after it the module's. Each run's answer per host is
// compared with the host's previous run, and what changed is an alert
// (`dragnet alerts`).

interface CreateFlags {
  every: number;
  for?: number;
  name: string;
  startIn?: number;
}

/** The `create` command a module command hangs under. */
function createCommandOf(command: Command): Command {
  let c: Command | null = command;
  while (c && c.name() !== "create") c = c.parent;
  if (!c) throw new DragnetError(Codes.PARAMS, "not under schedule create");
  return c;
}

function describe(s: ScheduleInfo): string {
  const every = formatDuration(s.everyMs);
  const next = s.nextRunAtMs ? `; next run at ${isoTime(s.nextRunAtMs)}` : "";
  const stopped = s.stoppedAtMs
    ? `; stopped by ${s.stoppedBy} at ${isoTime(s.stoppedAtMs)}${s.stopReason ? ` (${s.stopReason})` : ""}`
    : "";
  return `schedule ${s.id} "${printable(s.name)}": ${s.modules.join(", ")} on ${printable(s.target)} every ${every}, runs ${s.lastRun} of ${s.runs} issued, ${s.state}${next}${stopped}; ends ${isoTime(s.endsAtMs)}`;
}

/** Signs the operations a module command built as a schedule, and creates it. */
function scheduleSender(): SendAction {
  return async (command, flags, defaultName, operations) => {
    const opts = createCommandOf(command).opts() as CreateFlags;
    const globals = globalsOf(command);
    const api = await openClient(globals);
    try {
      const everyMs = opts.every;
      const forMs = opts.for ?? MAX_SCHEDULE_MS;
      if (everyMs < MIN_EVERY_MS) throw new DragnetError(Codes.PARAMS, "--every must be at least 1s");
      if (forMs > MAX_SCHEDULE_MS) throw new DragnetError(Codes.PARAMS, "--for must be at most 30d");
      const runs = Math.floor(forMs / everyMs);
      if (runs < 1) throw new DragnetError(Codes.PARAMS, "--for must be at least one --every");
      const action = await actionBodyOf(api, globals, flags, defaultName, operations);
      const start = Date.now() + (opts.startIn ?? 0);
      const body = {
        ...action,
        id: newId(),
        name: opts.name,
        validFromMs: start,
        expiresAtMs: start + everyMs * runs,
        // A run is due within its interval; it may not run longer than that.
        timeoutMs: Math.min(action.timeoutMs, everyMs),
        schedule: { everyMs, runs },
      };
      checkSchedule(body);
      const info = await api.createSchedule(signAction(body, api.key));
      outcome(command, { schedule: info.id, runs: info.runs, everyMs: info.everyMs }, describe(info));
      return 0;
    } finally {
      api.close();
    }
  };
}

export function registerScheduleCommand(program: Command, modules: ConsoleModules): void {
  const schedule = program
    .command("schedule")
    .description("sweeps signed once that run every interval; what changes between runs becomes an alert");

  const create = schedule
    .command("create")
    .description("sign a schedule: a module's sweep (its command and flags follow) run every interval")
    .requiredOption("--every <duration>", "how often it runs (at least 1s)", duration("--every"))
    .option("--for <duration>", "how long it runs (at most 30d, the default)", duration("--for"))
    .requiredOption("--name <name>", "what to call it (runs are named NAME #1, NAME #2 …)")
    .option(
      "--start-in <duration>",
      "the first run starts this long from now (default: now)",
      duration("--start-in"),
    )
    .enablePositionalOptions()
    .addHelpText(
      "after",
      `
Options before the module's command are the schedule's; after it, the module's:
  dragnet schedule create --every 1h --for 14d --name webshells file -t all --name '\\.php$' --path /var/www
Response modules (isolate, kill, quarantine, collect, upgrade, keyring) cannot be scheduled.
Each run is an action (dragnet action show); dragnet alerts shows what changed per host.`,
    );
  // Every module's command, sending a schedule instead of a sweep; response modules are refused when signed.
  const send = scheduleSender();
  const agents = new Command("agents");
  for (const module of Object.values(modules)) module.register({ program: create, agents, send });

  schedule
    .command("list")
    .description("schedules, newest first")
    .option("--limit <n>", "at most this many", nonNegativeInt("--limit"), 50)
    .action(
      handle(async (flags: { limit: number }, command: Command) =>
        withApi(command, async (api) => {
          const list = await api.listSchedules(flags.limit);
          const writer = new RowWriter(
            formatOf(globalsOf(command)),
            [
              { key: "id", header: "id" },
              { key: "name", header: "name" },
              { key: "modules", header: "modules" },
              { key: "every", header: "every" },
              { key: "runs", header: "runs" },
              { key: "state", header: "state" },
              { key: "next", header: "next run" },
              { key: "ends", header: "ends" },
            ],
            { withAgent: false },
          );
          for (const s of list) {
            writer.add({
              id: s.id,
              name: s.name,
              modules: s.modules.join(","),
              every: formatDuration(s.everyMs),
              runs: `${s.lastRun}/${s.runs}`,
              state: s.state,
              next: s.nextRunAtMs ? isoTime(s.nextRunAtMs) : "",
              ends: isoTime(s.endsAtMs),
            });
          }
          writer.end();
          return 0;
        }),
      ),
    );

  schedule
    .command("show <id>")
    .description("a schedule and its runs: each run's action, and what it changed")
    .action(
      handle(async (id: string, _flags: unknown, command: Command) =>
        withApi(command, async (api) => {
          const detail = await api.getSchedule(id);
          const s = detail.schedule!;
          if (globalsOf(command).json) {
            process.stdout.write(`${JSON.stringify({ schedule: s, runs: detail.runs })}\n`);
            return 0;
          }
          let text = `${describe(s)}\nsigned by ${s.signerNames.join(", ")}; created ${isoTime(s.submittedAtMs)}\n`;
          for (const r of detail.runs) {
            const what =
              r.changed === 0
                ? `no change on ${r.compared} hosts`
                : `${r.changed} of ${r.compared} hosts changed (${r.added} rows new, ${r.vanished} vanished)`;
            const extra = [
              r.baselines ? `${r.baselines} first answers` : "",
              r.failed ? `${r.failed} failed` : "",
            ].filter(Boolean);
            text += `  run ${String(r.run).padStart(3)}  ${isoTime(r.issuedAtMs)}  action ${r.actionId}  ${r.targeted} agents  ${what}${extra.length ? `; ${extra.join(", ")}` : ""}\n`;
          }
          process.stdout.write(text);
          return 0;
        }),
      ),
    );

  schedule
    .command("stop <id>")
    .description("sign a stop: no more runs are sent, and agents that hear of it refuse the schedule's runs")
    .option("--reason <text>", "why (recorded in the audit log)", "")
    .action(
      handle(async (id: string, flags: { reason: string }, command: Command) =>
        withApi(command, async (api) => {
          const full = (await api.getSchedule(id)).schedule!;
          const stop = signScheduleStop(
            { scheduleId: full.id, stoppedAtMs: Date.now(), untilMs: full.endsAtMs, reason: flags.reason },
            api.key,
          );
          const info = await api.stopSchedule(stop);
          outcome(command, { schedule: info.id, state: info.state, lastRun: info.lastRun }, describe(info));
          return 0;
        }),
      ),
    );
}
