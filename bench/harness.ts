// What the coordinator benchmarks share: a fleet (NATS, coordinator in this
// process) and a simulator process standing in for many agents.
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../test/helpers/cli.js";
import { eventually, type TestFleet } from "../test/helpers/fleet.js";
import type { SimulatorSpec } from "./simulator.js";

export const INBOX = "_INBOX_SIM";

export async function startSimulator(
  fleet: TestFleet,
  options: { agents: number; heartbeatIntervalMs: number; answer: boolean },
): Promise<ChildProcess> {
  const creds = await fleet.natsSecurity.writeUserCreds(join(fleet.dir, "simulator.creds"), "simulator", {
    pub: ["dragnet.hb.*", "dragnet.ack.*.*", "dragnet.res.*.*"],
    sub: ["dragnet.cmd.*", `${INBOX}.>`],
  });
  const spec: SimulatorSpec = {
    servers: [fleet.nats.url],
    caFile: fleet.caFile,
    creds,
    inboxPrefix: INBOX,
    ...options,
  };
  const specFile = join(fleet.dir, "simulator.json");
  writeFileSync(specFile, JSON.stringify(spec));
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench", "simulator.ts"), specFile], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      if (String(d).includes("ready")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the simulator exited with ${code}`)));
  });
  await eventually(
    async () =>
      (await fleet.api.listAgents('tags.sim == "true"')).length === options.agents ? true : undefined,
    120_000,
  );
  return child;
}

/** Percentile of sorted numbers. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}
