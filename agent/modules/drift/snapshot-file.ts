import { mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomicParts } from "../../../common/mod.js";
import type { SnapshotEntry } from "./snapshot.js";

// A snapshot kept on disk: baselines, and the reference state of a persistent
// watch. A versioned JSON file (it survives restarts and upgrades), 0600 in
// a 0700 directory, written whole or not at all.

export const FORMAT_VERSION = 2;

/** What recorded a snapshot, and how: enough to take the same snapshot again. */
export interface SnapshotHeader {
  version: number;
  name: string;
  createdAtMs: number;
  paths: string[];
  excludes: string[];
  maxEntries: number;
  maxContentBytes: number;
  skipped: number;
}

export type SnapshotFile<H extends SnapshotHeader = SnapshotHeader> = H & {
  entries: Array<[string, SnapshotEntry]>;
};

export function saveSnapshotFile<H extends SnapshotHeader>(
  path: string,
  header: H,
  entries: Iterable<[string, SnapshotEntry]>,
): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  // Entry by entry: a big tree's snapshot is hundreds of MB, never one string.
  writeFileAtomicParts(
    path,
    (function* () {
      yield `${JSON.stringify(header).slice(0, -1)},"entries":[`;
      let first = true;
      for (const e of entries) {
        yield `${first ? "" : ","}${JSON.stringify(e)}`;
        first = false;
      }
      yield "]}";
    })(),
    0o600,
  );
}

/** The snapshot in a file, or undefined when there is none; throws when it is of another format or damaged. */
export function loadSnapshotFile<H extends SnapshotHeader>(path: string): SnapshotFile<H> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  let stored: SnapshotFile<H>;
  try {
    stored = JSON.parse(text) as SnapshotFile<H>;
  } catch (err) {
    throw new Error(`${path} is damaged (${(err as Error).message}); record it again`);
  }
  if (stored.version !== FORMAT_VERSION) {
    throw new Error(
      `${path} has format ${stored.version}, this agent reads ${FORMAT_VERSION}; record it again`,
    );
  }
  if (!Array.isArray(stored.entries) || !Array.isArray(stored.paths)) throw new Error(`${path} is damaged`);
  return stored;
}
