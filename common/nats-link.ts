import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { type ConnectionOptions, credsAuthenticator } from "@nats-io/transport-node";
import { Codes, DragnetError } from "./errors.js";
import { readableByOthers } from "./files.js";

// How agents and the coordinator reach NATS: TLS always, unless plaintext is
// asked for by name (`insecure: true`, never a fallback), and each with its own
// credentials (a NATS user JWT + nkey seed, the `.creds` file NATS tools use)
// whose permissions limit it to its own subjects.

export interface NatsSettings {
  servers: string[];
  /** CA certificate the server's certificate must chain to (default: the system's). */
  ca?: string;
  /** NATS credentials file (user JWT and seed). */
  creds?: string;
  /** Plaintext: an explicit opt-out for debugging. */
  insecure: boolean;
}

function fail(message: string): never {
  throw new DragnetError(Codes.CONFIG, message);
}

/** Reads the `nats` section of a configuration; relative paths are relative to `baseDir`. */
export function parseNatsSettings(raw: unknown, baseDir: string, serversOverride?: string[]): NatsSettings {
  const json = (raw ?? {}) as Record<string, unknown>;
  if (typeof json !== "object" || Array.isArray(json)) fail("nats must be an object");
  let servers: unknown = serversOverride?.length ? serversOverride : json.servers;
  if (typeof servers === "string") servers = [servers];
  if (!Array.isArray(servers) || servers.length === 0 || servers.some((s) => typeof s !== "string" || !s)) {
    fail("no NATS server: give --nats URL or nats.servers in the config");
  }
  const path = (v: unknown, what: string) => {
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !v) fail(`nats.${what} must be a file path`);
    return isAbsolute(v) ? v : resolve(baseDir, v);
  };
  if (json.insecure !== undefined && typeof json.insecure !== "boolean")
    fail("nats.insecure must be true or false");
  return {
    servers: servers as string[],
    ca: path(json.ca, "ca"),
    creds: path(json.creds, "creds"),
    insecure: json.insecure === true,
  };
}

export function natsConnectOptions(
  s: NatsSettings,
): Pick<ConnectionOptions, "servers" | "tls" | "authenticator"> {
  const options: Pick<ConnectionOptions, "servers" | "tls" | "authenticator"> = {
    servers: s.servers,
    tls: s.insecure ? null : s.ca ? { caFile: s.ca } : {},
  };
  if (s.creds) {
    let creds: Buffer;
    try {
      creds = readFileSync(s.creds);
    } catch (err) {
      fail(`cannot read NATS credentials ${s.creds}: ${(err as Error).message}`);
    }
    if (readableByOthers(s.creds)) {
      fail(`NATS credentials ${s.creds} are readable by others; chmod 600 them`);
    }
    // Read again at each (re)connection: credentials renewed in place are used from the next one.
    const path = s.creds;
    options.authenticator = credsAuthenticator(() => {
      try {
        return readFileSync(path);
      } catch {
        return creds;
      }
    });
  }
  return options;
}

/**
 * The inbox prefix an agent's replies (JetStream publish acks, a coordinator's
 * answers) come to: its own, so no other agent can read them, and under
 * `_INBOX.` so that coordinators may answer there.
 */
export function agentInboxPrefix(agentId: string): string {
  return `_INBOX.agent.${agentId}`;
}
