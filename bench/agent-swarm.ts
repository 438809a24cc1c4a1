// A process running many real agents for the benchmarks: each its own Agent
// (state directory, NATS user with its own credentials over TLS, real
// modules), started from a spec file written by the benchmark. Prints
// "ready N" once all are connected, and exits on SIGTERM.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, loadAgentConfig } from "../agent/mod.js";
import { newId, silentLogger, writeFileAtomic } from "../common/mod.js";
import { agentCreds, type NatsAuthority } from "../common/nats-authority.js";

export interface SwarmSpec {
  servers: string[];
  caFile: string;
  keyring: string;
  authorityFile: string;
  prefix: string;
  /** Where the agents' state directories go (tmpfs: see bench/sweep.ts). */
  baseDir: string;
  from: number;
  count: number;
  heartbeatIntervalMs: number;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as SwarmSpec;
const authority = JSON.parse(readFileSync(spec.authorityFile, "utf8")) as NatsAuthority;
const agents: Agent[] = [];

async function startOne(i: number): Promise<void> {
  const stateDir = join(spec.baseDir, `agent-${i}`);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const id = newId();
  writeFileAtomic(join(stateDir, "agent-id"), `${id}\n`, 0o600);
  const creds = join(stateDir, "agent.creds");
  writeFileSync(creds, await agentCreds(authority, id, spec.prefix), { mode: 0o600 });
  const agent = new Agent(
    loadAgentConfig({
      nats: spec.servers,
      natsCa: spec.caFile,
      natsCreds: creds,
      stateDir,
      keyring: spec.keyring,
      hostname: `bench-${i}`,
      tag: ["bench=true"],
      heartbeatInterval: spec.heartbeatIntervalMs,
    }),
    { log: silentLogger },
  );
  await agent.start();
  agents.push(agent);
}

// A few at a time: thousands of TLS handshakes at once only queue up.
const CONCURRENCY = 25;
let next = spec.from;
const end = spec.from + spec.count;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < end) await startOne(next++);
  }),
);
process.stdout.write(`ready ${agents.length}\n`);
process.on("SIGTERM", () => process.exit(0));
setInterval(() => undefined, 1 << 30);
