import type { Command } from "commander";
import { builtinModules } from "../agent/modules/index.js";
import { ModuleRegistry } from "../agent/modules/registry.js";
import { Codes, DragnetError } from "../common/mod.js";
import type { Operation } from "../proto/api.js";
import { type ActionOptions, buildAction } from "./action-builder.js";
import { actionOptionsOf, globalsOf, type SweepFlags } from "./cli-kit.js";
import { homeDir, loadConsoleConfig, openClient } from "./home.js";
import { formatOf } from "./output/rows.js";
import { type FollowOptions, sweep } from "./sweep.js";

// What every command that sends operations to agents does once they are
// built: check them as every agent will (the agents' own module checks), so a
// bad regex or address is refused before anything is signed; then sign,
// submit and follow.

const modules = new ModuleRegistry(builtinModules);

export function paramsError(message: string): never {
  throw new DragnetError(Codes.PARAMS, message);
}

/** Throws DragnetError(PARAMS) with the module's own message for the first operation an agent would refuse. */
export function checkOperations(operations: Operation[]): void {
  for (const [i, op] of operations.entries()) {
    const { module, params } = modules.resolve(op, i);
    module.check(params as never);
  }
}

export async function sendAction(
  command: Command,
  flags: SweepFlags,
  defaultName: string,
  operations: Operation[],
  extra: { options?: Partial<ActionOptions> } & Pick<FollowOptions, "collect" | "rowsToo"> = {},
): Promise<number> {
  checkOperations(operations);
  const globals = globalsOf(command);
  const api = openClient(globals);
  try {
    // The signed action names the incident by its full id: a prefix or the default is resolved first.
    const incident = flags.incident ?? loadConsoleConfig(homeDir(globals))?.incident;
    const incidentId = incident ? (await api.getIncident(incident)).incident!.id : "";
    const body = buildAction(
      { ...actionOptionsOf(flags), ...extra.options, incidentId },
      defaultName,
      operations,
    );
    return await sweep(api, body, {
      format: formatOf(globals),
      modules: [...new Set(operations.map((op) => op.module!.$case))],
      noWait: !flags.wait,
      waitOffline: flags.waitOffline,
      quiet: flags.quiet,
      collect: extra.collect,
      rowsToo: extra.rowsToo,
    });
  } finally {
    api.close();
  }
}
