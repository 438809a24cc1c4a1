import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isSubjectToken, newId, writeFileAtomic } from "../common/mod.js";

/**
 * The agent's id, created once and kept in its state directory so it survives
 * restarts and upgrades.
 */
export function loadOrCreateAgentId(stateDir: string): string {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, "agent-id");
  try {
    const id = readFileSync(file, "utf8").trim();
    if (isSubjectToken(id)) return id;
    throw new Error(`${file} holds an invalid agent id; move it away to get a new one`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const id = newId();
  writeFileAtomic(file, `${id}\n`, 0o600);
  return id;
}
