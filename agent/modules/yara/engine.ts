import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import * as sea from "node:sea";
import { Codes, DragnetError, writeFileAtomic } from "../../../common/mod.js";

// YARA-X (VirusTotal's YARA in Rust) through the @litko/yara-x N-API addon.
// The agent stays one file: the addon rides inside the executable as a
// single-executable asset, is written once to the agent's state directory,
// and is checked by SHA-256 — against the hash the build baked into this code
// — right before it is loaded, from a directory only the agent can write.
// Run from source (tests, benches), it is loaded from node_modules.

/** The binding's surface this module uses (see @litko/yara-x's index.d.ts). */
export interface YaraMatchData {
  offset: number;
  length: number;
  data: string;
  identifier: string;
}
export interface YaraRuleMatch {
  ruleIdentifier: string;
  namespace: string;
  meta: Record<string, unknown>;
  tags: string[];
  matches: YaraMatchData[];
}
export interface YaraScanner {
  scanAsync(data: Buffer): Promise<YaraRuleMatch[]>;
}
export interface YaraBinding {
  compile(source: string): YaraScanner;
  validate(source: string): { errors: { code: string; message: string; line?: number }[] };
}

declare const __DRAGNET_YARA_SHA256__: string | undefined;
const ASSET = "yara-x.node";

let loaded: YaraBinding | undefined;
let addonPath: string | undefined;

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Refuses a path another user could have written: the file and its directory are ours and not group/world writable. */
function checkOwnership(path: string): void {
  for (const p of [path, join(path, "..")]) {
    const st = lstatSync(p);
    const uid = process.getuid?.();
    if (st.isSymbolicLink() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `yara: ${p} is not this agent's alone (owner, mode or a symlink): the engine is not loaded from it`,
      );
    }
  }
}

function load(path: string): YaraBinding {
  const m = { exports: {} as YaraBinding };
  process.dlopen(m, path);
  return m.exports;
}

/** Where the engine is: checked, and only this agent's to write (workers load it from here too). */
export async function yaraAddon(stateDir: string): Promise<string> {
  if (addonPath) return addonPath;
  if (!sea.isSea()) {
    // From source: the addon npm installed.
    addonPath = createRequire(import.meta.url).resolve(
      "@litko/yara-x-linux-x64-gnu/yara-x.linux-x64-gnu.node",
    );
    return addonPath;
  }
  const want = typeof __DRAGNET_YARA_SHA256__ === "string" ? __DRAGNET_YARA_SHA256__ : "";
  if (!want)
    throw new DragnetError(Codes.MODULE_FAILED, "yara: this agent was built without the YARA engine");
  const bytes = Buffer.from(sea.getAsset(ASSET));
  if (sha256(bytes) !== want)
    throw new DragnetError(
      Codes.MODULE_FAILED,
      "yara: the engine inside this executable does not match its hash",
    );
  const dir = join(stateDir, "native");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = join(dir, `yara-x-${want.slice(0, 16)}.node`);
  if (!existsSync(path)) writeFileAtomic(path, bytes, 0o500);
  checkOwnership(path);
  // Hashed as it is about to be loaded: what is on disk is what the build hashed (a
  // copy cut short or altered is written again, once, and hashed again).
  if (sha256(readFileSync(path)) !== want) {
    writeFileAtomic(path, bytes, 0o500);
    checkOwnership(path);
    if (sha256(readFileSync(path)) !== want)
      throw new DragnetError(Codes.MODULE_FAILED, `yara: ${path} is not the engine this agent carries`);
  }
  addonPath = path;
  return path;
}

/** The engine, loaded once per process. */
export async function yaraEngine(stateDir: string): Promise<YaraBinding> {
  loaded ??= load(await yaraAddon(stateDir));
  return loaded;
}
