import type { Command } from "commander";
import { checkOperations } from "../agent/modules/checks.js";
import type { ActionBody, Operation } from "../proto/api.js";
import { type ActionOptions, buildAction } from "./action-builder.js";
import { actionOptionsOf, globalsOf, type SweepFlags } from "./cli-kit.js";
import type { CoordinatorApi } from "./client.js";
import { type GlobalOptions, homeDir, loadConsoleConfig, openClient } from "./home.js";
import type { ResultRows } from "./output/formatters.js";
import { formatOf } from "./output/rows.js";
import { type FollowOptions, sweep } from "./sweep.js";

// What every command that sends operations to agents does once they are
// built: check them as every agent will (the modules' own checks), so a bad
// regex or address is refused before anything is signed; then sign, submit
// and follow.

export type SendExtra = { options?: Partial<ActionOptions> } & Pick<FollowOptions, "collect" | "rowsToo">;

export type SendAction = (
  command: Command,
  flags: SweepFlags,
  defaultName: string,
  operations: Operation[],
  extra?: SendExtra,
) => Promise<number>;

/**
 * A name that says what an action looks for, from the parameters given:
 * "process name=^sshd$ listening" rather than "process", so a past action
 * can be told from another in `action list`. At most 100 characters.
 */
export function nameWith(module: string, params: object): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === false || value === "" || value === 0) continue;
    if (Array.isArray(value)) {
      if (value.length) parts.push(`${key}=${value.map(String).join(",")}`);
    } else if (value === true) parts.push(key);
    else if (typeof value !== "object") parts.push(`${key}=${String(value)}`);
  }
  const name = [module, ...parts].join(" ");
  return name.length > 100 ? `${name.slice(0, 99)}…` : name;
}

/**
 * The action a command's flags and operations make, checked as every agent
 * will check it (the modules' own checks: a bad regex or address is refused
 * before anything is signed), with its incident resolved to a full id.
 */
export async function actionBodyOf(
  api: CoordinatorApi,
  globals: GlobalOptions,
  flags: SweepFlags,
  defaultName: string,
  operations: Operation[],
  options: Partial<ActionOptions> = {},
): Promise<ActionBody> {
  checkOperations(operations);
  // The signed action names the incident by its full id: a prefix or the default is resolved first.
  const incident = flags.incident ?? loadConsoleConfig(homeDir(globals))?.incident;
  const incidentId = incident ? (await api.getIncident(incident)).incident!.id : "";
  return buildAction({ ...actionOptionsOf(flags), ...options, incidentId }, defaultName, operations);
}

/** The console's way to send actions, printing results with these formatters. */
export function actionSender(rows: ResultRows): SendAction {
  return async (command, flags, defaultName, operations, extra = {}) => {
    const globals = globalsOf(command);
    const api = await openClient(globals);
    try {
      const body = await actionBodyOf(api, globals, flags, defaultName, operations, extra.options);
      return await sweep(api, body, {
        format: formatOf(globals),
        rows,
        modules: [...new Set(operations.map((op) => op.module!.$case))],
        noWait: !flags.wait,
        waitOffline: flags.waitOffline,
        deadlineMs: flags.deadline,
        quiet: flags.quiet,
        collect: extra.collect,
        rowsToo: extra.rowsToo,
      });
    } finally {
      api.close();
    }
  };
}
