import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import {
  Codes,
  DragnetError,
  type InvestigatorKey,
  Keyring,
  loadInvestigatorKey,
  writeFileAtomic,
} from "../common/mod.js";
import type { CoordinatorApi } from "./client.js";

// Where the console finds its coordinator and key: flags, then environment,
// then HOME/console.json (written by `dragnet lab up`, or by hand for a real
// deployment). HOME is --home, else $DRAGNET_HOME, else ~/.dragnet. Every
// call to the coordinator is authenticated with the investigator's key.

export interface GlobalOptions {
  home?: string;
  key?: string;
  coordinator?: string;
  ca?: string;
  json?: boolean;
  csv?: boolean;
}

export interface ConsoleConfig {
  /** host:port of the coordinator's gRPC API. */
  coordinator: string;
  /** CA certificate the coordinator's certificate chains to. */
  ca?: string;
  /** Plaintext gRPC (explicit opt-out, for debugging). */
  insecure?: boolean;
  /** Default investigator key file. */
  key?: string;
  /**
   * The keyring this console trusts (the one installed on agents): an approver
   * checks against it who really signed, instead of taking the coordinator's word.
   */
  keyring?: string;
  /** The incident actions belong to unless --incident says otherwise (dragnet incident use ID). */
  incident?: string;
}

export function homeDir(opts: GlobalOptions): string {
  return resolve(opts.home ?? process.env.DRAGNET_HOME ?? join(homedir(), ".dragnet"));
}

export const CONSOLE_CONFIG_FILE = "console.json";

export function loadConsoleConfig(home: string): ConsoleConfig | undefined {
  const path = join(home, CONSOLE_CONFIG_FILE);
  if (!existsSync(path)) return undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new DragnetError(Codes.CONFIG, `cannot read ${path}: ${(err as Error).message}`);
  }
  if (typeof json.coordinator !== "string")
    throw new DragnetError(Codes.CONFIG, `${path}: "coordinator" (host:port) is missing`);
  const rel = (p: unknown) => (typeof p === "string" ? (isAbsolute(p) ? p : resolve(home, p)) : undefined);
  return {
    coordinator: json.coordinator,
    ca: rel(json.ca),
    insecure: json.insecure === true,
    key: rel(json.key),
    keyring: rel(json.keyring),
    incident: typeof json.incident === "string" ? json.incident : undefined,
  };
}

/** Sets (or clears) the default incident in HOME/console.json, keeping everything else in it. */
export function setDefaultIncident(home: string, incidentId: string | undefined): void {
  const path = join(home, CONSOLE_CONFIG_FILE);
  if (!existsSync(path))
    throw new DragnetError(Codes.CONFIG, `no ${path} to record the incident in (dragnet lab up writes one)`);
  const json = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  if (incidentId) json.incident = incidentId;
  else delete json.incident;
  writeFileAtomic(path, `${JSON.stringify(json, null, 2)}\n`, 0o644);
}

/** A client of the coordinator's API; gRPC is loaded here, not by every command (help and key need none of it). */
export async function openClient(opts: GlobalOptions): Promise<CoordinatorApi> {
  const home = homeDir(opts);
  const config = loadConsoleConfig(home);
  const address = opts.coordinator ?? process.env.DRAGNET_COORDINATOR ?? config?.coordinator;
  if (!address) {
    throw new DragnetError(
      Codes.CONFIG,
      `no coordinator configured: start a lab (dragnet lab up), give --coordinator HOST:PORT, or write ${join(home, CONSOLE_CONFIG_FILE)}`,
    );
  }
  const caPath = opts.ca ?? process.env.DRAGNET_CA ?? config?.ca;
  let ca: Buffer | undefined;
  if (caPath) {
    try {
      ca = readFileSync(caPath);
    } catch (err) {
      throw new DragnetError(Codes.CONFIG, `cannot read CA certificate ${caPath}: ${(err as Error).message}`);
    }
  }
  const { CoordinatorApi } = await import("./client.js");
  return new CoordinatorApi(address, {
    key: loadKey(opts),
    ca,
    insecure: config?.insecure && !opts.coordinator,
  });
}

export function loadKey(opts: GlobalOptions): InvestigatorKey {
  const path = opts.key ?? process.env.DRAGNET_KEY ?? loadConsoleConfig(homeDir(opts))?.key;
  if (!path) {
    throw new DragnetError(
      Codes.CONFIG,
      "no investigator key: give --key FILE (create one with `dragnet key generate`)",
    );
  }
  return loadInvestigatorKey(path, process.env.DRAGNET_KEY_PASSPHRASE);
}

/** The keyring to check others' signatures against: $DRAGNET_KEYRING, else HOME/console.json's. */
export function loadConsoleKeyring(opts: GlobalOptions): Keyring {
  const path = process.env.DRAGNET_KEYRING ?? loadConsoleConfig(homeDir(opts))?.keyring;
  if (!path) {
    throw new DragnetError(
      Codes.CONFIG,
      `no keyring to check who signed: set "keyring" in ${join(homeDir(opts), CONSOLE_CONFIG_FILE)} or DRAGNET_KEYRING to the keyring your agents trust`,
    );
  }
  return Keyring.load(path);
}
