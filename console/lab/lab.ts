import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Codes, DragnetError, loadInvestigatorKey, writeFileAtomic } from "../../common/mod.js";
import type { CoordinatorApi } from "../client.js";
import { destroyLabNetwork } from "./netns.js";
import type { LabPostgres } from "./postgres.js";
import { isOurs, type StartedProcess, startDetached, stopProcess, tail, waitFor } from "./processes.js";

// A local fleet for rehearsal and tests: nats-server on loopback, the
// coordinator, and N agents from the built single executable, each with its own
// state directory and tags, all in one directory with a lab.json that records
// what was started so that `lab down` stops exactly that. Secure as a real
// deployment: a lab CA, TLS on NATS and gRPC, a NATS user per agent limited to
// its own subjects, and two investigators (alice, bob) so that the two-person
// rule of response modules can be practised. Plaintext only with `insecure`.

export const LAB_FILE = "lab.json";

export interface LabAgent extends StartedProcess {
  index: number;
  id: string;
  hostname: string;
  config: string;
  stateDir: string;
  tags: Record<string, string>;
  /** With --netns: the agent's network namespace and address there. */
  namespace?: string;
  address?: string;
}

export type LabNatsNode = StartedProcess & { url: string; port: number; config: string };

export type LabCoordinator = StartedProcess & {
  address: string;
  port: number;
  config: string;
  database: string;
};

export interface LabState {
  kind: "dragnet-lab";
  dir: string;
  running: boolean;
  startedAt: string;
  stoppedAt?: string;
  /** The first NATS node (the only one unless the lab runs a cluster). */
  nats: LabNatsNode;
  /** Every NATS node (a cluster has 3). */
  natsNodes?: LabNatsNode[];
  /** The first coordinator (the only one unless the lab runs several). */
  coordinator: LabCoordinator;
  /** Every coordinator, when the lab runs several on one PostgreSQL store. */
  coordinators?: LabCoordinator[];
  /** The lab's PostgreSQL cluster (--store postgres). */
  postgres?: LabPostgres;
  agents: LabAgent[];
  ca: string;
  keyring: string;
  keys: Record<string, string>;
  insecure: boolean;
  /** Agents in network namespaces on a lab bridge (--netns). */
  netns?: boolean;
}

export function readLab(dir: string): LabState | undefined {
  const file = join(dir, LAB_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as LabState;
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot read ${file}: ${(err as Error).message}`);
  }
}

/**
 * An agent's process now: an upgrade or a roll-back starts a new one, whose
 * pid the agent writes in its status file; lab.json has the first.
 */
function currentAgent(a: LabAgent): LabAgent {
  try {
    const { pid } = JSON.parse(readFileSync(join(a.stateDir, "status.json"), "utf8")) as { pid?: unknown };
    if (typeof pid === "number" && pid !== a.pid && isOurs({ pid, marker: a.marker })) return { ...a, pid };
  } catch {
    // No status yet: the pid lab.json has.
  }
  return a;
}

export function labProcesses(lab: LabState): Array<{ role: string } & StartedProcess> {
  return [
    ...lab.agents.map((a) => ({ role: `agent ${a.hostname}`, ...currentAgent(a) })),
    ...(lab.coordinators ?? [lab.coordinator]).map((c, i) => ({
      role: lab.coordinators ? `coordinator ${i + 1}` : "coordinator",
      ...c,
    })),
    ...(lab.natsNodes ?? [lab.nats]).map((node, i) => ({ role: `nats-server ${i + 1}`, ...node })),
    ...(lab.postgres ? [{ role: "postgres", ...lab.postgres }] : []),
  ];
}

/** The directory holding dragnet-agent and dragnet-coordinator.mjs. */
export function distDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [process.env.DRAGNET_DIST, here, resolve(here, "../dist"), resolve(here, "../../dist")];
  for (const c of candidates) {
    if (c && existsSync(join(c, "dragnet-agent")) && existsSync(join(c, "dragnet-coordinator.mjs"))) return c;
  }
  throw new DragnetError(
    Codes.CONFIG,
    "the built agent and coordinator are missing: run `npm run build` first",
  );
}

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", ...extra };
}

export function startCoordinator(
  dist: string,
  dir: string,
  config: string,
  logName = "coordinator.log",
): StartedProcess {
  return startDetached(process.execPath, [join(dist, "dragnet-coordinator.mjs"), "--config", config], {
    log: join(dir, "logs", logName),
    env: cleanEnv(),
    cwd: dir,
    marker: config,
  });
}

export async function coordinatorReady(proc: StartedProcess, api: CoordinatorApi): Promise<void> {
  // A NATS cluster elects its JetStream leader first: allow for it.
  await waitFor("the coordinator's API", 60_000, async () => {
    if (!isOurs(proc)) throw new Error(`the coordinator exited:\n${tail(proc.log)}`);
    await api.listAgents();
    return true;
  });
}

/**
 * Stops the lab's coordinator and starts it again on the same database and
 * port: what an operator does after an upgrade, and what an attacker who
 * edited the database would wait for. Agents and NATS keep running.
 */
export async function labRestartCoordinator(dir: string): Promise<LabState> {
  const lab = readLab(resolve(dir));
  if (!lab?.running) throw new DragnetError(Codes.NOT_FOUND, `no running lab in ${resolve(dir)}`);
  await stopProcess(lab.coordinator);
  const proc = startCoordinator(distDir(), lab.dir, lab.coordinator.config);
  lab.coordinator = { ...lab.coordinator, ...proc };
  writeFileAtomic(join(lab.dir, LAB_FILE), `${JSON.stringify(lab, null, 2)}\n`, 0o644);
  // gRPC only here: `dragnet isolate` reads the lab's state through this module.
  const { CoordinatorApi } = await import("../client.js");
  const api = new CoordinatorApi(lab.coordinator.address, {
    key: loadInvestigatorKey(lab.keys.alice!),
    ca: readFileSync(lab.ca),
    insecure: lab.insecure,
    deadlineMs: 2000,
  });
  try {
    await coordinatorReady(proc, api);
  } finally {
    api.close();
  }
  return lab;
}

export interface ProcessReport {
  role: string;
  pid: number;
  state: string;
}

export async function labDown(dir: string): Promise<ProcessReport[]> {
  const lab = readLab(resolve(dir));
  if (!lab) throw new DragnetError(Codes.NOT_FOUND, `no lab in ${resolve(dir)}`);
  const report: ProcessReport[] = [];
  // Agents first, then the coordinators, then NATS, then PostgreSQL: nothing is left talking to a dead peer.
  for (const p of labProcesses(lab)) report.push({ role: p.role, pid: p.pid, state: await stopProcess(p) });
  if (lab.netns) destroyLabNetwork(lab.agents.length);
  lab.running = false;
  lab.stoppedAt = new Date().toISOString();
  writeFileAtomic(join(lab.dir, LAB_FILE), `${JSON.stringify(lab, null, 2)}\n`, 0o644);
  return report;
}

export function labStatus(lab: LabState): ProcessReport[] {
  return labProcesses(lab).map((p) => ({
    role: p.role,
    pid: p.pid,
    state: isOurs(p) ? "running" : "stopped",
  }));
}
