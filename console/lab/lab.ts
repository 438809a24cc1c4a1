import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  Acl,
  Codes,
  DEFAULT_PREFIX,
  DragnetError,
  freePort,
  generateInvestigatorKey,
  loadInvestigatorKey,
  newId,
  publicEntryOf,
  saveInvestigatorKey,
  writeFileAtomic,
} from "../../common/mod.js";
import { createCertificateAuthority } from "../../common/pki.js";
import { AgentStatus } from "../../proto/api.js";
import { CoordinatorApi } from "../client.js";
import { CONSOLE_CONFIG_FILE, type ConsoleConfig } from "../home.js";
import { NatsSecurity, planNatsNodes } from "./nats-setup.js";
import { createLabNetwork, destroyLabNetwork, LAB_BRIDGE_IP } from "./netns.js";
import {
  findNatsServer,
  isOurs,
  type StartedProcess,
  startDetached,
  stopProcess,
  tail,
  tcpReady,
  waitFor,
} from "./processes.js";

// A local fleet for rehearsal and tests: nats-server on loopback, the
// coordinator, and N agents from the built single executable, each with its own
// state directory and tags, all in one directory with a lab.json that records
// what was started so that `lab down` stops exactly that. Secure as a real
// deployment: a lab CA, TLS on NATS and gRPC, a NATS user per agent limited to
// its own subjects, and two investigators (alice, bob) so that the two-person
// rule of response modules can be practised. Plaintext only with `insecure`.

export const LAB_FILE = "lab.json";
const ROLES = ["web", "db", "mail"];

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
  coordinator: StartedProcess & { address: string; port: number; config: string; database: string };
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

function labProcesses(lab: LabState): Array<{ role: string } & StartedProcess> {
  return [
    ...lab.agents.map((a) => ({ role: `agent ${a.hostname}`, ...currentAgent(a) })),
    { role: "coordinator", ...lab.coordinator },
    ...(lab.natsNodes ?? [lab.nats]).map((node, i) => ({ role: `nats-server ${i + 1}`, ...node })),
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

export interface LabUpOptions {
  dir: string;
  agents: number;
  heartbeatIntervalMs?: number;
  /** Plaintext NATS and gRPC (debugging only; credentials are still required). */
  insecure?: boolean;
  /** NATS nodes: 1, or 3 for a cluster (routes, results replicated 3 times). */
  natsNodes?: number;
  /** Each agent in its own network namespace on a lab bridge (root only; one NATS node). */
  netns?: boolean;
  log?: (line: string) => void;
}

function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", ...extra };
}

export async function labUp(opts: LabUpOptions): Promise<LabState> {
  const log = opts.log ?? (() => undefined);
  const dir = resolve(opts.dir);
  const existing = readLab(dir);
  if (existing?.running && labProcesses(existing).some(isOurs)) {
    throw new DragnetError(
      Codes.CONFIG,
      `a lab is already running in ${dir}; stop it first with: dragnet lab down`,
    );
  }
  if (opts.natsNodes !== undefined && opts.natsNodes !== 1 && opts.natsNodes !== 3) {
    throw new DragnetError(Codes.PARAMS, "--nats-nodes must be 1 or 3");
  }
  if (!Number.isInteger(opts.agents) || opts.agents < 0 || opts.agents > 200) {
    throw new DragnetError(Codes.PARAMS, "--agents must be between 0 and 200");
  }
  if (opts.netns && (opts.natsNodes ?? 1) !== 1) {
    throw new DragnetError(Codes.PARAMS, "--netns runs one NATS node (not --nats-nodes 3)");
  }
  const nats = findNatsServer();
  if (!nats) {
    throw new DragnetError(
      Codes.CONFIG,
      "nats-server is not installed (Debian: apt-get install nats-server)",
    );
  }
  const dist = distDir();
  // A lab starts fresh: the previous lab's database, agents and logs go (its keys are replaced below).
  if (existing) {
    for (const old of [
      "coordinator.db",
      "coordinator.db-wal",
      "coordinator.db-shm",
      "agents",
      "logs",
      "nats",
    ]) {
      rmSync(join(dir, old), { recursive: true, force: true });
    }
  }
  for (const sub of ["logs", "agents", "nats"]) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });

  // Trust material: a CA for TLS, the coordinator's certificate, two investigators.
  log("generating the lab CA, certificates and investigator keys (alice, bob)");
  const ca = await createCertificateAuthority("Dragnet lab CA");
  const coordCert = await ca.issue({
    commonName: "dragnet-coordinator",
    dnsNames: ["localhost"],
    ips: ["127.0.0.1"],
  });
  writeFileAtomic(join(dir, "ca.pem"), ca.cert, 0o644);
  writeFileAtomic(join(dir, "ca.key"), ca.key, 0o600);
  writeFileAtomic(join(dir, "coordinator.pem"), coordCert.cert, 0o644);
  writeFileAtomic(join(dir, "coordinator.key"), coordCert.key, 0o600);
  const keys: Record<string, string> = {};
  const entries = [];
  for (const name of ["alice", "bob"]) {
    const k = generateInvestigatorKey(name);
    const path = join(dir, `${name}.key`);
    saveInvestigatorKey(path, k);
    writeFileAtomic(join(dir, `${name}.pub`), `${JSON.stringify(publicEntryOf(k), null, 2)}\n`);
    keys[name] = path;
    entries.push(publicEntryOf(k));
  }
  // A release key: agents take upgrades it signs (`dragnet release publish --release-key release.key`).
  const releaseKey = generateInvestigatorKey("lab-release");
  saveInvestigatorKey(join(dir, "release.key"), releaseKey);
  writeFileAtomic(
    join(dir, "release-keys.json"),
    `${JSON.stringify({ releaseKeys: [publicEntryOf(releaseKey)] }, null, 2)}\n`,
    0o644,
  );
  // The same keyring and ACL for coordinator and agents: investigation needs weight 1, response 2.
  const keyring = join(dir, "keyring.json");
  writeFileAtomic(
    keyring,
    `${JSON.stringify({ investigators: entries, acl: Acl.defaults().toJson() }, null, 2)}\n`,
    0o644,
  );
  const insecure = opts.insecure === true;
  const caFile = join(dir, "ca.pem");
  // With --netns, NATS listens on the lab bridge (agents in namespaces reach it there), else on loopback.
  const net = opts.netns ? createLabNetwork(opts.agents) : undefined;
  const natsHost = net ? LAB_BRIDGE_IP : "127.0.0.1";
  const natsSecurity = await NatsSecurity.create(dir, ca, caFile, DEFAULT_PREFIX, [
    ...new Set(["127.0.0.1", natsHost]),
  ]);

  const started: Array<{ role: string } & StartedProcess> = [];
  try {
    // NATS on loopback only, TLS required unless asked otherwise, a JWT user per client;
    // with several nodes, a cluster whose routes join them all.
    const nodeCount = opts.natsNodes ?? 1;
    const natsNodes: LabNatsNode[] = [];
    for (const [i, { port, cluster }] of (await planNatsNodes(nodeCount, "dragnet-lab")).entries()) {
      const config = join(dir, nodeCount === 1 ? "nats.conf" : `nats-${i + 1}.conf`);
      const text = natsSecurity.serverConfig({
        host: natsHost,
        port,
        serverName: nodeCount === 1 ? "dragnet-lab" : `dragnet-lab-${i + 1}`,
        storeDir: join(dir, "nats", nodeCount === 1 ? "jetstream" : `jetstream-${i + 1}`),
        cluster,
        insecure,
      });
      writeFileSync(config, text, { mode: 0o600 });
      const proc = startDetached(nats, ["-c", config], {
        log: join(dir, "logs", nodeCount === 1 ? "nats.log" : `nats-${i + 1}.log`),
        env: cleanEnv(),
        cwd: dir,
        marker: config,
      });
      started.push({ role: `nats-server ${i + 1}`, ...proc });
      natsNodes.push({ ...proc, url: `nats://${natsHost}:${port}`, port, config });
      log(`nats-server pid ${proc.pid} on ${natsHost}:${port}${insecure ? " (PLAINTEXT)" : " (TLS)"}`);
    }
    for (const node of natsNodes) {
      await waitFor("nats-server to listen", 10_000, () => tcpReady(node.port, natsHost));
    }
    const natsUrls = natsNodes.map((node) => node.url);

    // The coordinator.
    const grpcPort = await freePort();
    const coordConfig = join(dir, "coordinator.json");
    const database = join(dir, "coordinator.db");
    await natsSecurity.writeCoordinatorCreds(join(dir, "coordinator.creds"));
    writeFileAtomic(join(dir, "nats-account.seed"), natsSecurity.authority.accountSeed, 0o600);
    writeFileSync(
      coordConfig,
      `${JSON.stringify(
        {
          nats: { servers: natsUrls, ca: "ca.pem", creds: "coordinator.creds", insecure },
          results: { replicas: nodeCount },
          grpc: insecure
            ? { listen: `127.0.0.1:${grpcPort}`, insecure: true }
            : { listen: `127.0.0.1:${grpcPort}`, cert: "coordinator.pem", key: "coordinator.key" },
          database: "coordinator.db",
          keyring: "keyring.json",
          // Hosts join the lab with `dragnet enroll token create` + `dragnet-agent enroll`.
          enrollment: { accountSeed: "nats-account.seed" },
        },
        null,
        2,
      )}\n`,
    );
    const coordProc = startCoordinator(dist, dir, coordConfig);
    started.push({ role: "coordinator", ...coordProc });
    log(
      `coordinator pid ${coordProc.pid}, API on 127.0.0.1:${grpcPort}${insecure ? " (PLAINTEXT)" : " (TLS)"}`,
    );
    const consoleConfig: ConsoleConfig = {
      coordinator: `localhost:${grpcPort}`,
      ca: "ca.pem",
      key: "alice.key",
      keyring: "keyring.json",
      ...(insecure ? { insecure: true } : {}),
    };
    writeFileAtomic(join(dir, CONSOLE_CONFIG_FILE), `${JSON.stringify(consoleConfig, null, 2)}\n`, 0o644);
    const api = new CoordinatorApi(consoleConfig.coordinator, {
      key: loadInvestigatorKey(keys.alice!),
      ca: Buffer.from(ca.cert),
      insecure,
      deadlineMs: 2000,
    });
    try {
      await coordinatorReady(coordProc, api);

      // The agents, from the single executable, with a clean environment; each has its own
      // (a hard link where it can: an upgrade replaces the name, never the shared file).
      const builtAgent = join(dist, "dragnet-agent");
      const agents: LabAgent[] = [];
      for (let index = 1; index <= opts.agents; index++) {
        const hostname = `lab-${String(index).padStart(2, "0")}`;
        const home = join(dir, "agents", hostname);
        const stateDir = join(home, "state");
        mkdirSync(stateDir, { recursive: true, mode: 0o700 });
        const agentExe = join(home, "dragnet-agent");
        try {
          linkSync(builtAgent, agentExe);
        } catch {
          copyFileSync(builtAgent, agentExe);
        }
        // Enrolment, lab style: the agent's id is chosen here so that its NATS user can be made for it.
        const agentId = newId();
        writeFileAtomic(join(stateDir, "agent-id"), `${agentId}\n`, 0o600);
        await natsSecurity.writeAgentCreds(agentId, join(home, "agent.creds"));
        const tags = {
          lab: "true",
          role: ROLES[(index - 1) % ROLES.length]!,
          env: index % 2 ? "prod" : "staging",
        };
        const config = join(home, "config.json");
        writeFileSync(
          config,
          `${JSON.stringify(
            {
              nats: { servers: natsUrls, ca: "../../ca.pem", creds: "agent.creds", insecure },
              stateDir: "state",
              keyring: "../../keyring.json",
              releaseKeys: "../../release-keys.json",
              hostname,
              tags,
              // Refuses to isolate the machine it shares with the investigator (unless --force-host).
              lab: true,
              ...(opts.heartbeatIntervalMs ? { heartbeatIntervalMs: opts.heartbeatIntervalMs } : {}),
            },
            null,
            2,
          )}\n`,
        );
        const where = net?.[index - 1];
        // `ip netns exec` execs the agent: the pid is the agent's.
        const [command, args] = where
          ? ["ip", ["netns", "exec", where.namespace, agentExe, "--config", config]]
          : [agentExe, ["--config", config]];
        const proc = startDetached(command, args, {
          log: join(dir, "logs", `${hostname}.log`),
          env: cleanEnv(),
          cwd: home,
          marker: config,
        });
        started.push({ role: `agent ${hostname}`, ...proc });
        agents.push({ ...proc, marker: config, index, id: "", hostname, config, stateDir, tags, ...where });
      }
      for (const a of agents) {
        a.id = await waitFor(`${a.hostname} to create its id`, 20_000, () => {
          if (!isOurs(a)) throw new Error(`${a.hostname} exited:\n${tail(a.log)}`);
          const f = join(a.stateDir, "agent-id");
          return existsSync(f) ? readFileSync(f, "utf8").trim() || undefined : undefined;
        });
      }
      if (agents.length) {
        await waitFor(`${agents.length} agents online`, 30_000, async () => {
          const online = new Set(
            (await api.listAgents())
              .filter((x) => x.status === AgentStatus.AGENT_STATUS_ONLINE)
              .map((x) => x.id),
          );
          return agents.every((a) => online.has(a.id)) ? true : undefined;
        });
      }
      log(`${agents.length} agents online`);
      const lab: LabState = {
        kind: "dragnet-lab",
        dir,
        running: true,
        startedAt: new Date().toISOString(),
        nats: natsNodes[0]!,
        natsNodes,
        coordinator: {
          ...coordProc,
          address: consoleConfig.coordinator,
          port: grpcPort,
          config: coordConfig,
          database,
        },
        agents,
        ca: join(dir, "ca.pem"),
        keyring,
        keys,
        insecure,
        ...(net ? { netns: true } : {}),
      };
      writeFileAtomic(join(dir, LAB_FILE), `${JSON.stringify(lab, null, 2)}\n`, 0o644);
      return lab;
    } finally {
      api.close();
    }
  } catch (err) {
    for (const p of started.reverse()) await stopProcess(p, 3000);
    if (net) destroyLabNetwork(opts.agents);
    throw err;
  }
}

function startCoordinator(dist: string, dir: string, config: string): StartedProcess {
  return startDetached(process.execPath, [join(dist, "dragnet-coordinator.mjs"), "--config", config], {
    log: join(dir, "logs", "coordinator.log"),
    env: cleanEnv(),
    cwd: dir,
    marker: config,
  });
}

async function coordinatorReady(proc: StartedProcess, api: CoordinatorApi): Promise<void> {
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
  // Agents first, then the coordinator, then NATS: nothing is left talking to a dead peer.
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
