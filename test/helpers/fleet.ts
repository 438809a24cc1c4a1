import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import { Agent, type AgentOptions, loadAgentConfig } from "../../agent/mod.js";
import {
  generateInvestigatorKey,
  type InvestigatorKey,
  type Logger,
  publicEntryOf,
  silentLogger,
} from "../../common/mod.js";
import { createCertificateAuthority } from "../../common/pki.js";
import { CoordinatorApi } from "../../console/client.js";
import { Coordinator, parseCoordinatorConfig, startGrpcServer } from "../../coordinator/mod.js";
import { type NatsServer, startNatsServer } from "./nats-server.js";

// A fleet in one test process: a real nats-server, a coordinator with its
// SQLite file and gRPC server over TLS, and agents talking real NATS. Only
// process boundaries are saved; nothing on the wire is mocked.

export function tempDir(prefix = "dragnet-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writeKeyring(
  path: string,
  keys: Array<{ name: string; keyId: string; publicKeyRaw: Buffer }>,
): string {
  writeFileSync(path, JSON.stringify({ investigators: keys.map((k) => publicEntryOf(k)) }));
  return path;
}

export interface TestFleet {
  dir: string;
  nats: NatsServer;
  coordinator: Coordinator;
  grpcServer: grpc.Server;
  api: CoordinatorApi;
  /** Trusted by coordinator and agents. */
  alice: InvestigatorKey;
  agents: Agent[];
  keyringPath: string;
  caCert: string;
  addAgent(options?: {
    hostname?: string;
    tags?: Record<string, string>;
    heartbeatIntervalMs?: number;
    modules?: AgentOptions["modules"];
  }): Promise<Agent>;
  stop(): Promise<void>;
}

export async function startFleet(
  options: { agents?: number; log?: Logger; heartbeatIntervalMs?: number; offlineAfterMs?: number } = {},
): Promise<TestFleet> {
  const dir = tempDir();
  const nats = await startNatsServer();
  const alice = generateInvestigatorKey("alice");
  const keyringPath = writeKeyring(join(dir, "keyring.json"), [alice]);
  const ca = await createCertificateAuthority("test CA");
  const leaf = await ca.issue({ commonName: "coordinator", dnsNames: ["localhost"], ips: ["127.0.0.1"] });
  writeFileSync(join(dir, "coordinator.pem"), leaf.cert);
  writeFileSync(join(dir, "coordinator.key"), leaf.key);
  const config = parseCoordinatorConfig(
    {
      nats: { servers: [nats.url] },
      grpc: { listen: "127.0.0.1:0", cert: "coordinator.pem", key: "coordinator.key" },
      database: "coordinator.db",
      keyring: "keyring.json",
      registry: { offlineAfterMs: options.offlineAfterMs ?? 300_000 },
    },
    dir,
  );
  const log = options.log ?? silentLogger;
  const coordinator = new Coordinator(config, { log });
  await coordinator.start();
  const { server, port } = await startGrpcServer(
    coordinator,
    "127.0.0.1:0",
    { cert: config.grpc.cert!, key: config.grpc.key! },
    log,
  );
  const api = new CoordinatorApi(`localhost:${port}`, { ca: Buffer.from(ca.cert) });
  const agents: Agent[] = [];

  const fleet: TestFleet = {
    dir,
    nats,
    coordinator,
    grpcServer: server,
    api,
    alice,
    agents,
    keyringPath,
    caCert: ca.cert,
    async addAgent(o = {}) {
      const n = agents.length + 1;
      const stateDir = join(dir, `agent-${n}`);
      mkdirSync(stateDir, { recursive: true });
      const agent = new Agent(
        loadAgentConfig({
          nats: [nats.url],
          stateDir,
          keyring: keyringPath,
          hostname: o.hostname ?? `host-${n}`,
          tag: Object.entries(o.tags ?? { n: String(n) }).map(([k, v]) => `${k}=${v}`),
          heartbeatInterval: o.heartbeatIntervalMs ?? options.heartbeatIntervalMs ?? 1000,
        }),
        { log, modules: o.modules },
      );
      await agent.start();
      agents.push(agent);
      return agent;
    },
    async stop() {
      await Promise.allSettled(agents.map((a) => a.stop()));
      api.close();
      server.forceShutdown();
      await coordinator.stop();
      await nats.stop();
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
