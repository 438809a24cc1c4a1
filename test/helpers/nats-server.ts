import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../common/mod.js";
import { type ClusterSettings, planNatsNodes } from "../../console/lab/nats-setup.js";
import { findNatsServer, tcpReady, waitFor } from "../../console/lab/processes.js";

// The one launcher every test uses: a real nats-server on a free loopback
// port, stopped by its pid. `config` builds a configuration file for the port
// (TLS and JWT auth: see console/lab/nats-setup.ts).

export interface NatsServer {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export async function startNatsServer(
  options: { args?: string[]; port?: number; host?: string; config?: (port: number) => string } = {},
): Promise<NatsServer> {
  const bin = findNatsServer();
  if (!bin) throw new Error("nats-server is not installed (apt-get install nats-server)");
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(process.env.DRAGNET_TEST_TMP ?? tmpdir(), "dragnet-nats-"));
  const host = options.host ?? "127.0.0.1";
  const args = ["-a", host, "-p", String(port)];
  if (options.config) {
    writeFileSync(join(dir, "nats.conf"), options.config(port));
    args.push("-c", join(dir, "nats.conf"));
  }
  const child: ChildProcess = spawn(bin, [...args, ...(options.args ?? [])], {
    stdio: ["ignore", "ignore", "pipe"],
    cwd: dir,
  });
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += String(d);
  });
  await waitFor(`nats-server on ${port}`, 10_000, () => {
    if (child.exitCode !== null) throw new Error(`nats-server exited: ${stderr}`);
    return tcpReady(port, host);
  });
  return {
    url: `nats://${host}:${port}`,
    port,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        process.kill(child.pid!, "SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A cluster of `size` nodes on loopback, each with its own client and route
 * port, routes to all the others, and its own JetStream directory. `config`
 * builds a node's configuration from its client port and cluster settings.
 */
export async function startNatsCluster(
  size: number,
  config: (port: number, cluster: ClusterSettings, index: number) => string,
): Promise<NatsServer[]> {
  const plan = await planNatsNodes(size, "dragnet-test");
  return Promise.all(
    plan.map(({ port, cluster }, i) => startNatsServer({ port, config: () => config(port, cluster!, i) })),
  );
}
