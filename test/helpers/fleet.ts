import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { connect, headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { Agent, type AgentFlags, type AgentOptions, loadAgentConfig } from "../../agent/mod.js";
import { AgentSigner } from "../../common/agent-identity.js";
import {
  type AclRule,
  createLogger,
  DEFAULT_PREFIX,
  freePort,
  generateInvestigatorKey,
  type InvestigatorKey,
  type Level,
  type Logger,
  newId,
  publicEntryOf,
  ROLES,
  saveInvestigatorKey,
  silentLogger,
  writeFileAtomic,
} from "../../common/mod.js";
import { agentInboxPrefix, natsConnectOptions } from "../../common/nats-link.js";
import { createCertificateAuthority } from "../../common/pki.js";
import { CoordinatorApi } from "../../console/client.js";
import { NatsSecurity } from "../../console/lab/nats-setup.js";
import { Coordinator, parseCoordinatorConfig, startGrpcServer } from "../../coordinator/mod.js";
import { ROOT } from "./cli.js";
import { type NatsServer, startNatsCluster, startNatsServer } from "./nats-server.js";

// A fleet in one test process: a real nats-server with TLS and per-agent JWT
// credentials, a coordinator with its SQLite file and gRPC server over TLS,
// and agents talking real NATS. Only process boundaries are saved; nothing on
// the wire is mocked.

export function tempDir(prefix = "dragnet-test-"): string {
  // Under the run's own directory (test/global-setup.ts), removed when the run ends.
  return mkdtempSync(join(process.env.DRAGNET_TEST_TMP ?? tmpdir(), prefix));
}

/** A keyring of these investigators; the first also administers (enrolment, releases), the others have the default roles. */
export function writeKeyring(
  path: string,
  keys: Array<{ name: string; keyId: string; publicKeyRaw: Buffer; roles?: string[] }>,
  acl?: Record<string, AclRule>,
): string {
  const investigators = keys.map((k, i) => ({
    ...publicEntryOf(k),
    ...(k.roles ? { roles: k.roles } : i === 0 ? { roles: [...ROLES] } : {}),
  }));
  writeFileSync(path, JSON.stringify({ investigators, ...(acl ? { acl } : {}) }));
  return path;
}

export interface TestFleet {
  dir: string;
  nats: NatsServer;
  /** Every node when the fleet runs a NATS cluster (nats is the first). */
  natsNodes: NatsServer[];
  coordinator: Coordinator;
  grpcServer: grpc.Server;
  /** The API as alice. */
  api: CoordinatorApi;
  /** Trusted by coordinator and agents, weight 1 each. */
  alice: InvestigatorKey;
  bob: InvestigatorKey;
  agents: Agent[];
  keyringPath: string;
  caCert: string;
  caFile: string;
  natsSecurity: NatsSecurity;
  /** A TLS server certificate for 127.0.0.1 from the fleet's CA (caFile), as PEM files in the fleet's directory. */
  issueCert(name: string): Promise<{ certFile: string; keyFile: string }>;
  /** A console home (console.json, alice.key, bob.key) for running the real `dragnet` against this fleet. */
  consoleHome(): string;
  /** An API client signing its calls with `key`. */
  apiAs(key: InvestigatorKey): CoordinatorApi;
  /** Gives an agent state directory an id and that id's NATS credentials; returns the agent flags to reach NATS. */
  prepareAgent(stateDir: string): Promise<{ id: string } & Pick<AgentFlags, "nats" | "natsCa" | "natsCreds">>;
  /** prepareAgent, as the agent executable's flags (--nats, --nats-ca, --nats-creds, --state-dir). */
  agentExeFlags(stateDir: string): Promise<string[]>;
  /** A NATS connection with the coordinator's credentials, an agent's, or none at all. */
  connectNats(
    as: "coordinator" | { agentId: string } | { observe: string[] } | "anonymous",
  ): Promise<NatsConnection>;
  /**
   * An agent's credentials in an attacker's hands: a NATS connection as that
   * agent, and the signature that agent's key makes (new credentials for the
   * same agent id: what theft of its .creds file gives).
   */
  stealAgent(
    agentId: string,
  ): Promise<{ nc: NatsConnection; sign(subject: string, data: Uint8Array): MsgHdrs }>;
  /** Stops the NATS server and starts it again on the same port with the same trust. */
  restartNats(pauseMs?: number): Promise<void>;
  /**
   * Stops the in-process coordinator and starts the built one (dist/) as its
   * own process on the same configuration, database and API port, so that a
   * test can SIGKILL it. Call again to start another after a kill.
   */
  spawnCoordinator(): Promise<ChildProcess>;
  /** Another coordinator (id `id`) as its own process (dist/) on the same NATS and store, with its own API. */
  spawnOtherCoordinator(id: string): Promise<{ child: ChildProcess; api: CoordinatorApi }>;
  /** Another coordinator (id `id`) on the same NATS, with its own database and API. */
  addCoordinator(
    id: string,
  ): Promise<{ coordinator: Coordinator; api: CoordinatorApi; database: string; stop(): Promise<void> }>;
  /** Stops the coordinator, runs `whileDown` (e.g. to edit its database), and starts it again on the same API port. */
  restartCoordinator(whileDown?: (databasePath: string) => void | Promise<void>): Promise<void>;
  addAgent(options?: {
    hostname?: string;
    tags?: Record<string, string>;
    heartbeatIntervalMs?: number;
    modules?: AgentOptions["modules"];
    /** The agent's clock (default Date.now): shifted, it plays a host whose clock is off. */
    now?: () => number;
    /** The agent's own keyring (default: the fleet's). */
    keyring?: string;
  }): Promise<Agent>;
  /** Stops an agent (if running) and starts it again on the same state directory, config and modules. */
  restartAgent(agent: Agent): Promise<Agent>;
  stop(): Promise<void>;
}

export async function startFleet(
  options: {
    agents?: number;
    log?: Logger;
    heartbeatIntervalMs?: number;
    offlineAfterMs?: number;
    /** The keyring's ACL, for coordinator and agents (default: Dragnet's defaults). */
    acl?: Record<string, AclRule>;
    /** A NATS cluster of this many nodes (routes, JetStream replicated that many times) instead of one server. */
    natsCluster?: number;
    /** The address NATS listens on (default 127.0.0.1; a veth address for agents in network namespaces). */
    natsHost?: string;
    /** Webhooks by role for `incident notify`. */
    notify?: Record<string, string>;
    /** The coordinator config's export sinks, as written in its file. */
    exports?: unknown[];
    /** The coordinator enrols agents (it gets the fleet account's seed). */
    enrollment?: boolean;
    /** How long credentials from enrolment are good for (default the coordinator's: 30d). */
    credentialsExpire?: string;
    /** How long past an acknowledged command's timeout the coordinator waits for its result (default 15 s). */
    resultGraceMs?: number;
    /** Where the coordinator's database lives (default coordinator.db in the fleet's directory). */
    database?: string;
    /** A PostgreSQL store (postgres://… of a cluster the test started) instead of SQLite. */
    postgres?: string;
    /** How long a silent coordinator keeps its open actions (several coordinators on PostgreSQL). */
    leaseMs?: number;
  } = {},
): Promise<TestFleet> {
  const dir = tempDir();
  const alice = generateInvestigatorKey("alice");
  const bob = generateInvestigatorKey("bob");
  const keyringPath = writeKeyring(join(dir, "keyring.json"), [alice, bob], options.acl);
  const ca = await createCertificateAuthority("test CA");
  const caFile = join(dir, "ca.pem");
  writeFileSync(caFile, ca.cert);
  const natsHost = options.natsHost ?? "127.0.0.1";
  const natsSecurity = await NatsSecurity.create(dir, ca, caFile, DEFAULT_PREFIX, [
    ...new Set(["127.0.0.1", natsHost]),
  ]);
  // The same JetStream directory across restarts: what the server stored survives them.
  const natsConfig = (port: number) =>
    natsSecurity.serverConfig({
      host: natsHost,
      port,
      serverName: "dragnet-test",
      storeDir: join(dir, "jetstream"),
    });
  const natsNodes = options.natsCluster
    ? await startNatsCluster(options.natsCluster, (port, cluster, i) =>
        natsSecurity.serverConfig({
          host: "127.0.0.1",
          port,
          serverName: `dragnet-test-${i + 1}`,
          storeDir: join(dir, `jetstream-${i + 1}`),
          cluster,
        }),
      )
    : [await startNatsServer({ config: natsConfig, host: natsHost })];
  const nats = natsNodes[0]!;
  const servers = natsNodes.map((node) => node.url);
  const coordinatorCreds = await natsSecurity.writeCoordinatorCreds(join(dir, "coordinator.creds"));
  const leaf = await ca.issue({ commonName: "coordinator", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
  writeFileSync(join(dir, "coordinator.pem"), leaf.cert);
  writeFileSync(join(dir, "coordinator.key"), leaf.key);
  const rawConfig = {
    nats: { servers, ca: caFile, creds: coordinatorCreds },
    grpc: { listen: "127.0.0.1:0", cert: "coordinator.pem", key: "coordinator.key" },
    database: options.database ?? "coordinator.db",
    keyring: "keyring.json",
    registry: { offlineAfterMs: options.offlineAfterMs ?? 300_000 },
    resultGraceMs: options.resultGraceMs ?? 15_000,
    // Results a killed coordinator held come back after 3 s rather than the default 10.
    results: { ackWaitMs: 3000, replicas: options.natsCluster ?? 1 },
    ...(options.postgres ? { store: { postgres: options.postgres } } : {}),
    ...(options.leaseMs ? { leaseMs: options.leaseMs } : {}),
    ...(options.notify ? { notify: options.notify } : {}),
    ...(options.exports ? { exports: options.exports } : {}),
    ...(options.enrollment
      ? {
          enrollment: {
            accountSeed: "nats-account.seed",
            ...(options.credentialsExpire ? { credentialsExpire: options.credentialsExpire } : {}),
          },
        }
      : {}),
  };
  if (options.enrollment) {
    writeFileAtomic(join(dir, "nats-account.seed"), natsSecurity.authority.accountSeed, 0o600);
  }
  const config = parseCoordinatorConfig(rawConfig, dir);
  // DRAGNET_TEST_LOG=debug shows what coordinator and agents log while a test runs.
  const level = process.env.DRAGNET_TEST_LOG as Level | undefined;
  const log = options.log ?? (level ? createLogger("test", { level }) : silentLogger);
  const coordinator = await Coordinator.open(config, { log });
  await coordinator.start();
  const grpcTls = { cert: config.grpc.cert!, key: config.grpc.key! };
  const { server, port } = await startGrpcServer(coordinator, "127.0.0.1:0", grpcTls, log);
  // The same configuration as a file, on the same API port, for a coordinator run as its own process.
  const configFile = join(dir, "coordinator.json");
  writeFileSync(
    configFile,
    JSON.stringify({ ...rawConfig, grpc: { ...rawConfig.grpc, listen: `127.0.0.1:${port}` } }),
  );
  let inProcess = true;
  const apiAs = (key: InvestigatorKey) =>
    new CoordinatorApi(`localhost:${port}`, { key, ca: Buffer.from(ca.cert) });
  const api = apiAs(alice);
  const agents: Agent[] = [];
  const connections: NatsConnection[] = [];
  const processes: ChildProcess[] = [];
  /** How each agent is made again on its state directory (restartAgent). */
  const restartable = new Map<Agent, () => Agent>();
  /**
   * Resolves once the fleet's coordinator lists a started agent (its first heartbeat is verified
   * off the event loop, so it is not there the instant the agent starts), or at once when that
   * coordinator does not answer (stopped or killed by the test).
   */
  const heardOf = async (agent: Agent): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        if ((await api.listAgents(`id == "${agent.id}"`)).length > 0) return;
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`the coordinator did not hear of agent ${agent.id} within 10 s`);
  };

  const fleet: TestFleet = {
    dir,
    nats,
    natsNodes,
    coordinator,
    grpcServer: server,
    api,
    alice,
    bob,
    agents,
    keyringPath,
    caCert: ca.cert,
    caFile,
    natsSecurity,
    apiAs,
    consoleHome() {
      const home = join(dir, "console");
      mkdirSync(home, { recursive: true });
      saveInvestigatorKey(join(home, "alice.key"), alice);
      saveInvestigatorKey(join(home, "bob.key"), bob);
      writeFileSync(join(home, "ca.pem"), ca.cert);
      writeFileSync(
        join(home, "console.json"),
        JSON.stringify({
          coordinator: `localhost:${port}`,
          ca: "ca.pem",
          key: "alice.key",
          keyring: keyringPath,
        }),
      );
      return home;
    },
    async issueCert(name) {
      const leaf = await ca.issue({ commonName: name, dnsNames: ["localhost"], ips: ["127.0.0.1"] });
      const certFile = join(dir, `${name}.pem`);
      const keyFile = join(dir, `${name}.key`);
      writeFileSync(certFile, leaf.cert);
      writeFileAtomic(keyFile, leaf.key, 0o600);
      return { certFile, keyFile };
    },
    async prepareAgent(stateDir) {
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      const idFile = join(stateDir, "agent-id");
      const id = existsSync(idFile) ? readFileSync(idFile, "utf8").trim() : newId();
      writeFileAtomic(idFile, `${id}\n`, 0o600);
      const natsCreds = await natsSecurity.writeAgentCreds(id, join(stateDir, "agent.creds"));
      return { id, nats: servers, natsCa: caFile, natsCreds };
    },
    async agentExeFlags(stateDir) {
      const link = await fleet.prepareAgent(stateDir);
      return [
        ...link.nats!.flatMap((url) => ["--nats", url]),
        ...["--nats-ca", link.natsCa!, "--nats-creds", link.natsCreds!, "--state-dir", stateDir],
      ];
    },
    async connectNats(as) {
      let creds: string | undefined;
      if (as === "coordinator") creds = coordinatorCreds;
      else if (as !== "anonymous" && "observe" in as) {
        creds = await natsSecurity.writeUserCreds(join(dir, "observer.creds"), "observer", {
          pub: [],
          sub: as.observe,
        });
      } else if (as !== "anonymous") {
        creds = await natsSecurity.writeAgentCreds(as.agentId, join(dir, `as-${as.agentId}.creds`));
      }
      const nc = await connect({
        ...natsConnectOptions({ servers, ca: caFile, creds, insecure: false }),
        // An agent's user may only read replies on its own inbox.
        ...(typeof as === "object" && "agentId" in as ? { inboxPrefix: agentInboxPrefix(as.agentId) } : {}),
      });
      connections.push(nc);
      return nc;
    },
    async stealAgent(agentId) {
      const nc = await fleet.connectNats({ agentId });
      const signer = AgentSigner.fromCreds(readFileSync(join(dir, `as-${agentId}.creds`), "utf8"));
      return {
        nc,
        sign(subject, data) {
          const h = headers();
          for (const [k, v] of Object.entries(signer.sign(subject, data))) h.set(k, v);
          return h;
        },
      };
    },
    async restartNats(pauseMs = 0) {
      const port = fleet.nats.port;
      await Promise.allSettled(fleet.natsNodes.map((node) => node.stop()));
      if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      fleet.nats = await startNatsServer({ port, config: natsConfig, host: natsHost });
      fleet.natsNodes[0] = fleet.nats;
    },
    async spawnCoordinator() {
      if (inProcess) {
        inProcess = false;
        fleet.grpcServer.forceShutdown();
        await fleet.coordinator.stop();
      }
      const child = spawn(
        process.execPath,
        [join(ROOT, "dist", "dragnet-coordinator.mjs"), "--config", configFile],
        {
          stdio: ["ignore", "ignore", level ? "inherit" : "ignore"],
          env: { PATH: process.env.PATH, DRAGNET_LOG_LEVEL: level ?? "warn" },
        },
      );
      processes.push(child);
      await eventually(async () => ((await api.listAgents()) ? true : undefined), 20_000);
      return child;
    },
    async spawnOtherCoordinator(id) {
      const otherPort = await freePort();
      const file = join(dir, `coordinator-${id}.json`);
      writeFileSync(
        file,
        JSON.stringify({
          ...rawConfig,
          id,
          database: `coordinator-${id}.db`,
          grpc: { ...rawConfig.grpc, listen: `127.0.0.1:${otherPort}` },
        }),
      );
      const child = spawn(
        process.execPath,
        [join(ROOT, "dist", "dragnet-coordinator.mjs"), "--config", file],
        {
          stdio: ["ignore", "ignore", level ? "inherit" : "ignore"],
          env: { PATH: process.env.PATH, DRAGNET_LOG_LEVEL: level ?? "warn" },
        },
      );
      processes.push(child);
      const otherApi = new CoordinatorApi(`localhost:${otherPort}`, { key: alice, ca: Buffer.from(ca.cert) });
      await eventually(async () => ((await otherApi.listAgents()) ? true : undefined), 20_000);
      return { child, api: otherApi };
    },
    async addCoordinator(id) {
      const own = parseCoordinatorConfig({ ...rawConfig, id, database: `coordinator-${id}.db` }, dir);
      const other = await Coordinator.open(own, { log });
      await other.start();
      const started = await startGrpcServer(other, "127.0.0.1:0", grpcTls, log);
      const otherApi = new CoordinatorApi(`localhost:${started.port}`, {
        key: alice,
        ca: Buffer.from(ca.cert),
      });
      return {
        coordinator: other,
        api: otherApi,
        database: own.database,
        async stop() {
          otherApi.close();
          started.server.forceShutdown();
          await other.stop();
        },
      };
    },
    async restartCoordinator(whileDown) {
      fleet.grpcServer.forceShutdown();
      await fleet.coordinator.stop();
      await whileDown?.(config.database);
      fleet.coordinator = await Coordinator.open(config, { log });
      await fleet.coordinator.start();
      fleet.grpcServer = (await startGrpcServer(fleet.coordinator, `127.0.0.1:${port}`, grpcTls, log)).server;
    },
    async addAgent(o = {}) {
      const n = agents.length + 1;
      const stateDir = join(dir, `agent-${n}`);
      const { id: _id, ...link } = await fleet.prepareAgent(stateDir);
      const agentConfig = loadAgentConfig({
        ...link,
        stateDir,
        keyring: o.keyring ?? keyringPath,
        hostname: o.hostname ?? `host-${n}`,
        tag: Object.entries(o.tags ?? { n: String(n) }).map(([k, v]) => `${k}=${v}`),
        heartbeatInterval: o.heartbeatIntervalMs ?? options.heartbeatIntervalMs ?? 1000,
      });
      const agentOptions = { log, modules: o.modules, now: o.now };
      const agent = new Agent(agentConfig, agentOptions);
      await agent.start();
      agents.push(agent);
      restartable.set(agent, () => new Agent(agentConfig, agentOptions));
      await heardOf(agent);
      return agent;
    },
    async restartAgent(agent) {
      const again = restartable.get(agent);
      if (!again) throw new Error("not an agent of this fleet");
      await agent.stop();
      const next = again();
      await next.start();
      agents[agents.indexOf(agent)] = next;
      restartable.set(next, again);
      await heardOf(next);
      return next;
    },
    async stop() {
      await Promise.allSettled(agents.map((a) => a.stop()));
      await Promise.allSettled(connections.map((c) => c.close()));
      api.close();
      for (const p of processes) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
      if (inProcess) {
        fleet.grpcServer.forceShutdown();
        await fleet.coordinator.stop();
      }
      await Promise.allSettled(fleet.natsNodes.map((node) => node.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < (options.agents ?? 0); i++) await fleet.addAgent();
  return fleet;
}

/** Polls until `probe` returns a value (not undefined), or fails after `timeoutMs`. */
export async function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
