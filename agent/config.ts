import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { Codes, DEFAULT_PREFIX, DragnetError, type Level } from "../common/mod.js";
import { type NatsSettings, parseNatsSettings } from "../common/nats-link.js";
import { splitTag, tagProblem } from "../common/tags.js";

// The agent's local configuration: a JSON file (--config) and flags, flags
// winning. It names the NATS servers, the state directory and the keyring of
// investigators this agent trusts; nothing in it comes from the coordinator.

export interface AgentConfig {
  nats: NatsSettings;
  subjectPrefix: string;
  stateDir: string;
  /** Path of the keyring (trusted investigators). */
  keyring: string;
  tags: Record<string, string>;
  /** Overrides the reported hostname (the lab runs several agents on one host). */
  hostname?: string;
  heartbeatIntervalMs: number;
  /** Tolerance for clock differences when checking an action's validity window. */
  clockSkewMs: number;
  logLevel: Level;
  /** A lab agent (`dragnet lab up`): it refuses to isolate the machine it shares with the investigator. */
  lab: boolean;
  /** The config file it was read from, if any. */
  configFile?: string;
  /** Release keys the agent takes upgrades signed by ({"releaseKeys": [...]}); none: no upgrades. */
  releaseKeys?: string;
  /** Commands run at once; more wait in line (default 2). */
  maxConcurrentCommands: number;
  /** Heap limit of each search worker thread, in MB (default 256): a scan past it stops, the agent goes on. */
  commandMemoryMb: number;
}

export interface AgentFlags {
  config?: string;
  nats?: string[];
  natsCa?: string;
  natsCreds?: string;
  natsInsecure?: boolean;
  stateDir?: string;
  keyring?: string;
  tag?: string[];
  hostname?: string;
  heartbeatInterval?: number;
  logLevel?: string;
}

const DEFAULTS = {
  subjectPrefix: DEFAULT_PREFIX,
  heartbeatIntervalMs: 10_000,
  clockSkewMs: 60_000,
  logLevel: "info" as Level,
  maxConcurrentCommands: 2,
  commandMemoryMb: 256,
};

function configError(message: string): DragnetError {
  return new DragnetError(Codes.CONFIG, message);
}

export function parseTag(text: string): [string, string] {
  const tag = splitTag(text);
  if (!tag) throw configError(`tag "${text}" is not key=value`);
  const why = tagProblem(...tag);
  if (why) throw configError(why);
  return tag;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw configError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== "object" || json === null || Array.isArray(json)) throw new Error("not an object");
    return json as Record<string, unknown>;
  } catch (err) {
    throw configError(`config ${path} is not a JSON object: ${(err as Error).message}`);
  }
}

function str(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") throw configError(`${what} must be a non-empty string`);
  return v;
}

function positiveInt(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0)
    throw configError(`${what} must be a positive integer`);
  return v;
}

export function loadAgentConfig(flags: AgentFlags): AgentConfig {
  const file = flags.config ? readConfigFile(flags.config) : {};
  const base = flags.config ? resolve(flags.config, "..") : process.cwd();
  const path = (p: string | undefined) =>
    p === undefined ? undefined : isAbsolute(p) ? p : resolve(base, p);

  const natsJson = { ...((file.nats ?? {}) as Record<string, unknown>) };
  if (flags.natsCa) natsJson.ca = resolve(flags.natsCa);
  if (flags.natsCreds) natsJson.creds = resolve(flags.natsCreds);
  if (flags.natsInsecure) natsJson.insecure = true;
  const nats = parseNatsSettings(natsJson, base, flags.nats);

  const tags: Record<string, string> = {};
  const fileTags = file.tags ?? {};
  if (typeof fileTags !== "object" || fileTags === null || Array.isArray(fileTags)) {
    throw configError("tags must be an object of strings");
  }
  for (const [k, v] of Object.entries(fileTags as Record<string, unknown>)) {
    if (typeof v !== "string") throw configError(`tag "${k}" must be a string`);
    const [key, value] = parseTag(`${k}=${v}`);
    tags[key] = value;
  }
  for (const t of flags.tag ?? []) {
    const [key, value] = parseTag(t);
    tags[key] = value;
  }

  const stateDir = flags.stateDir ?? path(str(file.stateDir, "stateDir"));
  if (!stateDir) throw configError("no state directory: give --state-dir DIR or stateDir in the config");
  const keyring = flags.keyring ?? path(str(file.keyring, "keyring"));
  if (!keyring) throw configError("no keyring: give --keyring FILE or keyring in the config");

  const logLevel = (flags.logLevel ?? str(file.logLevel, "logLevel") ?? DEFAULTS.logLevel) as Level;
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    throw configError(`logLevel must be debug, info, warn or error, not "${logLevel}"`);
  }
  const heartbeatIntervalMs =
    flags.heartbeatInterval ??
    positiveInt(file.heartbeatIntervalMs, "heartbeatIntervalMs") ??
    DEFAULTS.heartbeatIntervalMs;
  if (heartbeatIntervalMs < 100) throw configError("heartbeatIntervalMs must be at least 100");

  const config: AgentConfig = {
    nats,
    subjectPrefix: str(file.subjectPrefix, "subjectPrefix") ?? DEFAULTS.subjectPrefix,
    stateDir: resolve(stateDir),
    keyring: resolve(keyring),
    tags,
    hostname: flags.hostname ?? str(file.hostname, "hostname"),
    heartbeatIntervalMs,
    clockSkewMs: positiveInt(file.clockSkewMs, "clockSkewMs") ?? DEFAULTS.clockSkewMs,
    logLevel,
    lab: file.lab === true,
    configFile: flags.config ? resolve(flags.config) : undefined,
    releaseKeys: path(str(file.releaseKeys, "releaseKeys")),
    maxConcurrentCommands:
      positiveInt(file.maxConcurrentCommands, "maxConcurrentCommands") ?? DEFAULTS.maxConcurrentCommands,
    commandMemoryMb: positiveInt(file.commandMemoryMb, "commandMemoryMb") ?? DEFAULTS.commandMemoryMb,
  };
  if (config.maxConcurrentCommands > 64) throw configError("maxConcurrentCommands must be at most 64");
  if (config.commandMemoryMb < 16 || config.commandMemoryMb > 16_384)
    throw configError("commandMemoryMb must be 16 to 16384");
  // What decides who may command this agent must be writable by root alone.
  if (runsAsRoot()) {
    for (const [what, p] of [
      ["config", flags.config],
      ["keyring", config.keyring],
      ["NATS credentials", config.nats.creds],
      ["release keys", config.releaseKeys],
      // It holds the record of actions already run: whoever can delete it can replay them.
      ["state", config.stateDir],
    ] as const) {
      if (p) checkRootOnly(what, p);
    }
  }
  return config;
}

export function runsAsRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/**
 * Refuses a file that a user other than root could change, directly or by
 * replacing one of the directories on its path: an agent running as root would
 * otherwise take its trust from that user.
 */
export function checkRootOnly(what: string, path: string): void {
  const chain = [resolve(path)];
  while (dirname(chain.at(-1)!) !== chain.at(-1)) chain.push(dirname(chain.at(-1)!));
  for (const p of chain) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      continue; // a missing file is reported by whoever reads it
    }
    const isDir = st.isDirectory();
    // A sticky directory (like /tmp) lets only a file's owner replace it.
    const stickyDir = isDir && (st.mode & 0o1000) !== 0;
    if (st.uid !== 0) {
      throw configError(
        `the ${what} ${isDir ? "directory " : ""}${p} belongs to uid ${st.uid}; it must belong to root`,
      );
    }
    if ((st.mode & 0o022) !== 0 && !stickyDir) {
      throw configError(
        `the ${what} ${isDir ? "directory " : ""}${p} is writable by ${st.mode & 0o002 ? "everyone" : "its group"} (mode ${(st.mode & 0o777).toString(8)}); the agent runs as root and refuses it`,
      );
    }
  }
}
