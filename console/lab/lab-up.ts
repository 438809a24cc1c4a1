import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
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
  ROLES,
  saveInvestigatorKey,
  writeFileAtomic,
} from "../../common/mod.js";
import { createCertificateAuthority } from "../../common/pki.js";
import { AgentStatus } from "../../proto/api.js";
import { CoordinatorApi } from "../client.js";
import { CONSOLE_CONFIG_FILE, type ConsoleConfig } from "../home.js";
import {
  cleanEnv,
  coordinatorReady,
  distDir,
  LAB_FILE,
  type LabAgent,
  type LabNatsNode,
  type LabState,
  labProcesses,
  readLab,
  startCoordinator,
} from "./lab.js";
import { NatsSecurity, planNatsNodes } from "./nats-setup.js";
import { createLabNetwork, destroyLabNetwork, LAB_BRIDGE_IP } from "./netns.js";
import { type LabPostgres, removeLabPostgres, startLabPostgres } from "./postgres.js";
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

// `dragnet lab up`, step by step: the options checked, the trust material
// written, then NATS, the coordinator and the agents started in that order —
// and every process started so far stopped again if a step fails.

const HOST_ROLES = ["web", "db", "mail"];

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
  /** Where the coordinators keep state: an SQLite file (default), or a PostgreSQL cluster the lab starts. */
  store?: "sqlite" | "postgres";
  /** Coordinators sharing the PostgreSQL store (1 to 3; more than 1 needs --store postgres). */
  coordinators?: number;
  log?: (line: string) => void;
}

/** Refuses options that cannot make a lab, before anything is touched. */
function checkLabOptions(opts: LabUpOptions, dir: string, existing: LabState | undefined): void {
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
  if (opts.store !== undefined && opts.store !== "sqlite" && opts.store !== "postgres") {
    throw new DragnetError(Codes.PARAMS, "--store must be sqlite or postgres");
  }
  const coordinators = opts.coordinators ?? 1;
  if (!Number.isInteger(coordinators) || coordinators < 1 || coordinators > 3) {
    throw new DragnetError(Codes.PARAMS, "--coordinators must be 1, 2 or 3");
  }
  if (coordinators > 1 && opts.store !== "postgres") {
    throw new DragnetError(
      Codes.PARAMS,
      "--coordinators above 1 needs --store postgres (each SQLite file belongs to one coordinator)",
    );
  }
  if (opts.netns && (opts.natsNodes ?? 1) !== 1) {
    throw new DragnetError(Codes.PARAMS, "--netns runs one NATS node (not --nats-nodes 3)");
  }
}

/**
 * Trust material: a CA for TLS, the coordinator's certificate, two
 * investigators (alice, bob), a release key, and the keyring and ACL that
 * coordinator and agents share (investigation needs weight 1, response 2).
 */
async function writeTrustMaterial(dir: string, log: (line: string) => void) {
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
    // alice also administers the lab (enrolment tokens, releases); bob has the default roles.
    entries.push({ ...publicEntryOf(k), ...(name === "alice" ? { roles: [...ROLES] } : {}) });
  }
  // A release key: agents take upgrades it signs (`dragnet release publish --release-key release.key`).
  const releaseKey = generateInvestigatorKey("lab-release");
  saveInvestigatorKey(join(dir, "release.key"), releaseKey);
  writeFileAtomic(
    join(dir, "release-keys.json"),
    `${JSON.stringify({ releaseKeys: [publicEntryOf(releaseKey)] }, null, 2)}\n`,
    0o644,
  );
  const keyring = join(dir, "keyring.json");
  writeFileAtomic(
    keyring,
    `${JSON.stringify({ investigators: entries, acl: Acl.defaults().toJson() }, null, 2)}\n`,
    0o644,
  );
  return { ca, keys, keyring };
}

/** What the lab's parts are started with, and every process started so far (stopped if a later step fails). */
interface LabBuild {
  dir: string;
  dist: string;
  insecure: boolean;
  natsSecurity: NatsSecurity;
  log: (line: string) => void;
  started: Array<{ role: string } & StartedProcess>;
}

/**
 * NATS on loopback (or the lab bridge) only, TLS required unless asked
 * otherwise, a JWT user per client; with several nodes, a cluster whose
 * routes join them all.
 */
async function startNatsNodes(b: LabBuild, nats: string, host: string, nodeCount: number) {
  const nodes: LabNatsNode[] = [];
  for (const [i, { port, cluster }] of (await planNatsNodes(nodeCount, "dragnet-lab")).entries()) {
    const config = join(b.dir, nodeCount === 1 ? "nats.conf" : `nats-${i + 1}.conf`);
    const text = b.natsSecurity.serverConfig({
      host,
      port,
      serverName: nodeCount === 1 ? "dragnet-lab" : `dragnet-lab-${i + 1}`,
      storeDir: join(b.dir, "nats", nodeCount === 1 ? "jetstream" : `jetstream-${i + 1}`),
      cluster,
      insecure: b.insecure,
    });
    writeFileSync(config, text, { mode: 0o600 });
    const proc = startDetached(nats, ["-c", config], {
      log: join(b.dir, "logs", nodeCount === 1 ? "nats.log" : `nats-${i + 1}.log`),
      env: cleanEnv(),
      cwd: b.dir,
      marker: config,
    });
    b.started.push({ role: `nats-server ${i + 1}`, ...proc });
    nodes.push({ ...proc, url: `nats://${host}:${port}`, port, config });
    b.log(`nats-server pid ${proc.pid} on ${host}:${port}${b.insecure ? " (PLAINTEXT)" : " (TLS)"}`);
  }
  for (const node of nodes) {
    await waitFor("nats-server to listen", 10_000, () => tcpReady(node.port, host));
  }
  return nodes;
}

/** Where a lab coordinator keeps its state: its own SQLite file, or the lab's PostgreSQL cluster. */
type LabStore = { postgres: LabPostgres } | undefined;

/**
 * Coordinator `n` of `count`: its config and process. Several share the PostgreSQL store
 * and answer agents as one group ("lab"); each has its own id, API port and local files.
 */
async function startLabCoordinator(
  b: LabBuild,
  natsUrls: string[],
  replicas: number,
  n: number,
  count: number,
  store: LabStore,
) {
  const port = await freePort();
  const name = count === 1 ? "coordinator" : `coordinator-${n}`;
  const config = join(b.dir, `${name}.json`);
  const database = count === 1 ? "coordinator.db" : join(name, "coordinator.db");
  if (count > 1) mkdirSync(join(b.dir, name), { recursive: true, mode: 0o700 });
  const listen = `127.0.0.1:${port}`;
  writeFileSync(
    config,
    `${JSON.stringify(
      {
        ...(count > 1 ? { id: `lab-${n}` } : {}),
        nats: { servers: natsUrls, ca: "ca.pem", creds: "coordinator.creds", insecure: b.insecure },
        results: { replicas },
        grpc: b.insecure
          ? { listen, insecure: true }
          : { listen, cert: "coordinator.pem", key: "coordinator.key" },
        database,
        ...(store ? { store: { postgres: store.postgres.url, passwordFile: "postgres.password" } } : {}),
        // One journal key for all: a notebook page sealed by one coordinator verifies on every other.
        journalKey: "journal.key",
        keyring: "keyring.json",
        // Hosts join the lab with `dragnet enroll token create` + `dragnet-agent enroll`.
        enrollment: { accountSeed: "nats-account.seed" },
      },
      null,
      2,
    )}\n`,
  );
  const proc = startCoordinator(b.dist, b.dir, config, `${name}.log`);
  b.started.push({ role: name, ...proc });
  b.log(`${name} pid ${proc.pid}, API on ${listen}${b.insecure ? " (PLAINTEXT)" : " (TLS)"}`);
  return { ...proc, address: `localhost:${port}`, port, config, database: join(b.dir, database) };
}

/** The console's config: every coordinator's address (it fails over from one to the next). */
function writeConsoleConfig(b: LabBuild, addresses: string[]): void {
  const consoleConfig: ConsoleConfig = {
    coordinator: addresses.join(","),
    ca: "ca.pem",
    key: "alice.key",
    keyring: "keyring.json",
    ...(b.insecure ? { insecure: true } : {}),
  };
  writeFileAtomic(join(b.dir, CONSOLE_CONFIG_FILE), `${JSON.stringify(consoleConfig, null, 2)}\n`, 0o644);
}

/**
 * The agents, from the single executable, with a clean environment; each has
 * its own (a hard link where it can: an upgrade replaces the name, never the
 * shared file). Resolves once each has written its id.
 */
async function startLabAgents(
  b: LabBuild,
  count: number,
  natsUrls: string[],
  net: ReturnType<typeof createLabNetwork> | undefined,
  heartbeatIntervalMs: number | undefined,
): Promise<LabAgent[]> {
  const builtAgent = join(b.dist, "dragnet-agent");
  const agents: LabAgent[] = [];
  for (let index = 1; index <= count; index++) {
    const hostname = `lab-${String(index).padStart(2, "0")}`;
    const home = join(b.dir, "agents", hostname);
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
    await b.natsSecurity.writeAgentCreds(agentId, join(home, "agent.creds"));
    const tags = {
      lab: "true",
      role: HOST_ROLES[(index - 1) % HOST_ROLES.length]!,
      env: index % 2 ? "prod" : "staging",
    };
    const config = join(home, "config.json");
    writeFileSync(
      config,
      `${JSON.stringify(
        {
          nats: { servers: natsUrls, ca: "../../ca.pem", creds: "agent.creds", insecure: b.insecure },
          stateDir: "state",
          keyring: "../../keyring.json",
          releaseKeys: "../../release-keys.json",
          hostname,
          tags,
          // Refuses to isolate the machine it shares with the investigator (unless --force-host).
          lab: true,
          ...(heartbeatIntervalMs ? { heartbeatIntervalMs } : {}),
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
      log: join(b.dir, "logs", `${hostname}.log`),
      env: cleanEnv(),
      cwd: home,
      marker: config,
    });
    b.started.push({ role: `agent ${hostname}`, ...proc });
    agents.push({ ...proc, marker: config, index, id: "", hostname, config, stateDir, tags, ...where });
  }
  for (const a of agents) {
    a.id = await waitFor(`${a.hostname} to create its id`, 20_000, () => {
      if (!isOurs(a)) throw new Error(`${a.hostname} exited:\n${tail(a.log)}`);
      const f = join(a.stateDir, "agent-id");
      return existsSync(f) ? readFileSync(f, "utf8").trim() || undefined : undefined;
    });
  }
  return agents;
}

export async function labUp(opts: LabUpOptions): Promise<LabState> {
  const log = opts.log ?? (() => undefined);
  const dir = resolve(opts.dir);
  const existing = readLab(dir);
  checkLabOptions(opts, dir, existing);
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
    // The previous lab's PostgreSQL data too (it may live outside the lab directory).
    if (existing.postgres) removeLabPostgres(existing.postgres, dir);
    for (const old of [
      "coordinator.db",
      "coordinator.db-wal",
      "coordinator.db-shm",
      "coordinator-1",
      "coordinator-2",
      "coordinator-3",
      "agents",
      "logs",
      "nats",
    ]) {
      rmSync(join(dir, old), { recursive: true, force: true });
    }
  }
  for (const sub of ["logs", "agents", "nats"]) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
  const { ca, keys, keyring } = await writeTrustMaterial(dir, log);
  const insecure = opts.insecure === true;
  // With --netns, NATS listens on the lab bridge (agents in namespaces reach it there), else on loopback.
  const net = opts.netns ? createLabNetwork(opts.agents) : undefined;
  const natsHost = net ? LAB_BRIDGE_IP : "127.0.0.1";
  const natsSecurity = await NatsSecurity.create(dir, ca, join(dir, "ca.pem"), DEFAULT_PREFIX, [
    ...new Set(["127.0.0.1", natsHost]),
  ]);
  const b: LabBuild = { dir, dist, insecure, natsSecurity, log, started: [] };
  let postgres: LabPostgres | undefined;
  try {
    const nodeCount = opts.natsNodes ?? 1;
    const natsNodes = await startNatsNodes(b, nats, natsHost, nodeCount);
    const natsUrls = natsNodes.map((node) => node.url);
    await natsSecurity.writeCoordinatorCreds(join(dir, "coordinator.creds"));
    writeFileAtomic(join(dir, "nats-account.seed"), natsSecurity.authority.accountSeed, 0o600);
    if (opts.store === "postgres") {
      postgres = await startLabPostgres(dir, join(dir, "logs", "postgres.log"));
      b.started.push({ role: "postgres", ...postgres });
      log(`postgres pid ${postgres.pid} on 127.0.0.1:${postgres.port} (data in ${postgres.home})`);
    }
    const count = opts.coordinators ?? 1;
    const coordinators = [];
    for (let n = 1; n <= count; n++) {
      coordinators.push(
        await startLabCoordinator(b, natsUrls, nodeCount, n, count, postgres && { postgres }),
      );
    }
    writeConsoleConfig(
      b,
      coordinators.map((c) => c.address),
    );
    const coordinator = coordinators[0]!;
    const apiAt = (address: string) =>
      new CoordinatorApi(address, {
        key: loadInvestigatorKey(keys.alice!),
        ca: Buffer.from(ca.cert),
        insecure,
        deadlineMs: 2000,
      });
    for (const c of coordinators.slice(1)) {
      const each = apiAt(c.address);
      try {
        await coordinatorReady(c, each);
      } finally {
        each.close();
      }
    }
    const api = apiAt(coordinator.address);
    try {
      await coordinatorReady(coordinator, api);
      const agents = await startLabAgents(b, opts.agents, natsUrls, net, opts.heartbeatIntervalMs);
      if (agents.length) await agentsOnline(api, agents);
      log(`${agents.length} agents online`);
      const lab: LabState = {
        kind: "dragnet-lab",
        dir,
        running: true,
        startedAt: new Date().toISOString(),
        nats: natsNodes[0]!,
        natsNodes,
        coordinator,
        ...(count > 1 ? { coordinators } : {}),
        ...(postgres ? { postgres } : {}),
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
    for (const p of b.started.reverse()) await stopProcess(p, 3000);
    if (postgres) removeLabPostgres(postgres, dir);
    if (net) destroyLabNetwork(opts.agents);
    throw err;
  }
}

/** Resolves once the coordinator reports every one of these agents online. */
async function agentsOnline(api: CoordinatorApi, agents: LabAgent[]): Promise<void> {
  await waitFor(`${agents.length} agents online`, 30_000, async () => {
    const online = new Set(
      (await api.listAgents()).filter((x) => x.status === AgentStatus.AGENT_STATUS_ONLINE).map((x) => x.id),
    );
    return agents.every((a) => online.has(a.id)) ? true : undefined;
  });
}
