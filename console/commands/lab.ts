import type { Command } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import { globalsOf, handle, nonNegativeInt, outcome } from "../cli-kit.js";
import { homeDir, openClient } from "../home.js";
import type { LabState } from "../lab/lab.js";
import { statusName } from "./agents.js";

// `dragnet lab up|status|down`: a local fleet to rehearse with. The lab's code
// (X.509, NATS, gRPC) is loaded by the subcommand that runs, not to list them.
const labCode = () => import("../lab/lab.js");

export function registerLabCommand(program: Command): void {
  const lab = program
    .command("lab")
    .description("a local fleet (nats-server, coordinator, agents) for rehearsal");

  lab
    .command("up")
    .description("start nats-server, the coordinator and N agents in the background")
    .option("--agents <n>", "number of agents", nonNegativeInt("--agents"), 3)
    .option("--dir <dir>", "lab directory (default: HOME, i.e. --home, $DRAGNET_HOME or ~/.dragnet)")
    .option("--heartbeat-interval <ms>", "agents' heartbeat interval", nonNegativeInt("--heartbeat-interval"))
    .option("--insecure", "plaintext NATS and gRPC, for debugging only (credentials are still required)")
    .option("--netns", "each agent in its own network namespace on a lab bridge (198.18.0.0/24; root only)")
    .option(
      "--nats-nodes <n>",
      "1 NATS server, or 3 as a cluster (results replicated on all 3)",
      nonNegativeInt("--nats-nodes"),
      1,
    )
    .option(
      "--store <kind>",
      "sqlite (one file per coordinator) or postgres (a cluster the lab starts)",
      "sqlite",
    )
    .option(
      "--coordinators <n>",
      "coordinators sharing the store (more than 1 needs --store postgres)",
      nonNegativeInt("--coordinators"),
      1,
    )
    .action(
      handle(
        async (
          flags: {
            agents: number;
            dir?: string;
            heartbeatInterval?: number;
            insecure?: boolean;
            natsNodes: number;
            netns?: boolean;
            store: string;
            coordinators: number;
          },
          command: Command,
        ) => {
          const home = homeDir(globalsOf(command));
          const dir = flags.dir ?? home;
          const { labUp } = await import("../lab/lab-up.js");
          const state = await labUp({
            dir,
            agents: flags.agents,
            heartbeatIntervalMs: flags.heartbeatInterval || undefined,
            insecure: flags.insecure,
            natsNodes: flags.natsNodes,
            netns: flags.netns,
            store: flags.store as "sqlite" | "postgres",
            coordinators: flags.coordinators,
            log: (line) => process.stderr.write(`lab: ${line}\n`),
          });
          const summary = {
            dir: state.dir,
            nats: (state.natsNodes ?? [state.nats]).map((n) => n.url),
            coordinator: state.coordinator.address,
            coordinators: (state.coordinators ?? [state.coordinator]).map((c) => c.address),
            store: state.postgres ? state.postgres.url : "sqlite",
            agents: state.agents.length,
            keys: state.keys,
            insecure: !!state.insecure,
          };
          if (globalsOf(command).json) {
            outcome(command, summary, "");
            return 0;
          }
          process.stdout.write(
            `lab up in ${state.dir}: nats ${(state.natsNodes ?? [state.nats]).map((n) => n.url).join(" ")}, ${coordinatorsLine(state)}, ${state.agents.length} agents\n` +
              `investigator keys: ${Object.values(state.keys).join(", ")} (alice is the default; --key picks bob)\n` +
              "note: both keys are here, in one place: in the lab the two-person rule is one person. Give each investigator their own key on their own machine for real use.\n" +
              (state.insecure ? "WARNING: plaintext NATS and gRPC (--insecure)\n" : ""),
          );
          if (state.dir !== home) process.stdout.write(`use it with: export DRAGNET_HOME=${state.dir}\n`);
          return 0;
        },
      ),
    );

  lab
    .command("status")
    .description("the lab's processes and agents")
    .option("--dir <dir>", "lab directory (default: HOME)")
    .action(
      handle(async (flags: { dir?: string }, command: Command) => {
        const globals = globalsOf(command);
        const dir = flags.dir ?? homeDir(globals);
        const { readLab, labStatus } = await labCode();
        const state = readLab(dir);
        if (!state)
          throw new DragnetError(Codes.NOT_FOUND, `no lab in ${dir} (start one with: dragnet lab up)`);
        const procs = labStatus(state);
        for (const p of procs) printProcess(command, p);
        const running = procs.filter((p) => p.state === "running").length;
        if (procs.find((p) => p.role === "coordinator")?.state === "running") {
          const api = await openClient({ ...globals, home: dir });
          try {
            const agents = await api.listAgents();
            const byStatus = new Map<string, number>();
            for (const a of agents)
              byStatus.set(statusName(a.status), (byStatus.get(statusName(a.status)) ?? 0) + 1);
            outcome(
              command,
              { agents: Object.fromEntries(byStatus) },
              `agents: ${[...byStatus].map(([s, n]) => `${n} ${s}`).join(", ") || "none"}`,
            );
          } finally {
            api.close();
          }
        }
        return running === procs.length ? 0 : 1;
      }),
    );

  lab
    .command("restart-coordinator")
    .description("restart the lab's coordinator on its database (agents and NATS keep running)")
    .option("--dir <dir>", "lab directory (default: HOME)")
    .action(
      handle(async (flags: { dir?: string }, command: Command) => {
        const { labRestartCoordinator } = await labCode();
        const state = await labRestartCoordinator(flags.dir ?? homeDir(globalsOf(command)));
        outcome(
          command,
          { role: "coordinator", pid: state.coordinator.pid, state: "restarted" },
          `coordinator restarted: pid ${state.coordinator.pid}`,
        );
        return 0;
      }),
    );

  lab
    .command("down")
    .description("stop exactly the processes `lab up` started")
    .option("--dir <dir>", "lab directory (default: HOME)")
    .action(
      handle(async (flags: { dir?: string }, command: Command) => {
        const dir = flags.dir ?? homeDir(globalsOf(command));
        const { labDown } = await labCode();
        const report = await labDown(dir);
        for (const p of report) printProcess(command, p);
        return 0;
      }),
    );
}

/** "coordinator ADDRESS" or "coordinators A, B on PostgreSQL URL". */
function coordinatorsLine(state: LabState): string {
  const all = state.coordinators ?? [state.coordinator];
  const where = state.postgres ? ` on ${state.postgres.url}` : "";
  return all.length === 1
    ? `coordinator ${state.coordinator.address}${where}`
    : `coordinators ${all.map((c) => c.address).join(", ")}${where}`;
}

/** One of the lab's processes: its role, pid and state. */
function printProcess(command: Command, p: { role: string; pid: number; state: string }): void {
  outcome(
    command,
    { role: p.role, pid: p.pid, state: p.state },
    `${p.role.padEnd(20)} pid ${String(p.pid).padEnd(8)} ${p.state}`,
  );
}
