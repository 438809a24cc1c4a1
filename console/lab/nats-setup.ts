import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { freePort, writeFileAtomic } from "../../common/mod.js";
import {
  agentCreds,
  coordinatorCreds,
  createNatsAuthority,
  type NatsAuthority,
  natsServerTrustConfig,
  userCreds,
} from "../../common/nats-authority.js";
import type { CertificateAuthority } from "../../common/pki.js";

// Everything a nats-server needs to run the way Dragnet expects in the lab and
// in tests: TLS with a certificate from the lab CA (clients must use TLS), and
// decentralised JWT auth so that every agent connects as its own user, limited
// to its own subjects. Credentials files are written 0600.

export interface ClusterSettings {
  name: string;
  /** This node's route port. */
  port: number;
  /** The other nodes' route ports. */
  routes: number[];
}

/** Free client and route ports for `size` nodes on loopback; a single node gets no cluster settings. */
export async function planNatsNodes(
  size: number,
  name: string,
): Promise<Array<{ port: number; cluster?: ClusterSettings }>> {
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < size; i++) {
    clientPorts.push(await freePort());
    routePorts.push(await freePort());
  }
  return clientPorts.map((port, i) => ({
    port,
    ...(size > 1
      ? { cluster: { name, port: routePorts[i]!, routes: routePorts.filter((_, j) => j !== i) } }
      : {}),
  }));
}

export class NatsSecurity {
  private constructor(
    readonly authority: NatsAuthority,
    /** CA certificate clients verify the server against. */
    readonly caFile: string,
    readonly certFile: string,
    readonly keyFile: string,
    readonly prefix: string,
    private readonly routePassword: string = randomBytes(18).toString("hex"),
  ) {}

  /** Writes the server's certificate and key into `dir` and creates the NATS trust chain. */
  static async create(
    dir: string,
    ca: CertificateAuthority,
    caFile: string,
    prefix: string,
    /** Addresses clients reach the server on (loopback, and a lab bridge's address with --netns). */
    ips: string[] = ["127.0.0.1"],
  ): Promise<NatsSecurity> {
    const leaf = await ca.issue({ commonName: "dragnet-nats", dnsNames: ["localhost"], ips });
    const certFile = join(dir, "nats-server.pem");
    const keyFile = join(dir, "nats-server.key");
    writeFileAtomic(certFile, leaf.cert, 0o644);
    writeFileAtomic(keyFile, leaf.key, 0o600);
    return new NatsSecurity(await createNatsAuthority(), caFile, certFile, keyFile, prefix);
  }

  /**
   * A complete nats-server configuration: loopback listener, TLS required,
   * JWT trust, JetStream (results travel on a stream) and, for a cluster, the
   * routes to the other nodes.
   */
  serverConfig(options: {
    host: string;
    port: number;
    serverName: string;
    storeDir: string;
    cluster?: ClusterSettings;
    /** Plaintext clients (an explicit opt-out for debugging). */
    insecure?: boolean;
  }): string {
    const { host, port, serverName, storeDir, cluster } = options;
    return [
      `listen: ${host}:${port}`,
      `server_name: ${serverName}`,
      ...(options.insecure
        ? []
        : [
            "tls {",
            `  cert_file: ${JSON.stringify(this.certFile)}`,
            `  key_file: ${JSON.stringify(this.keyFile)}`,
            "  timeout: 5",
            "}",
          ]),
      "jetstream {",
      `  store_dir: ${JSON.stringify(storeDir)}`,
      "  max_memory_store: 256MB",
      "  max_file_store: 4GB",
      "}",
      ...(cluster
        ? [
            "cluster {",
            `  name: ${cluster.name}`,
            `  listen: ${host}:${cluster.port}`,
            // Only the other nodes may join: a route could otherwise publish as any agent.
            `  authorization { user: route, password: ${JSON.stringify(this.routePassword)} }`,
            `  routes: [${cluster.routes.map((p) => JSON.stringify(`nats-route://route:${this.routePassword}@${host}:${p}`)).join(", ")}]`,
            "}",
          ]
        : []),
      // Room for a burst of results from thousands of agents.
      "max_pending: 256MB",
      natsServerTrustConfig(this.authority),
    ].join("\n");
  }

  async writeAgentCreds(agentId: string, path: string): Promise<string> {
    writeFileAtomic(path, await agentCreds(this.authority, agentId, this.prefix), 0o600);
    return path;
  }

  /** A user allowed exactly these subjects (e.g. a read-only observer). */
  async writeUserCreds(path: string, name: string, allow: { pub: string[]; sub: string[] }): Promise<string> {
    writeFileAtomic(path, await userCreds(this.authority.accountSeed, name, allow), 0o600);
    return path;
  }

  async writeCoordinatorCreds(path: string): Promise<string> {
    writeFileAtomic(path, await coordinatorCreds(this.authority, this.prefix), 0o600);
    return path;
  }
}
