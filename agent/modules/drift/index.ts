import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Codes, DragnetError } from "../../../common/mod.js";
import type { BaselineInfo, DriftResult } from "../../../proto/mod.js";
import { defineModule } from "../registry.js";
import { checkDrift, driftOptions } from "./check.js";
import { compare } from "./compare.js";
import { tagOrigins } from "./origin.js";
import { takeSnapshot } from "./snapshot.js";
import { FORMAT_VERSION, loadSnapshotFile, type SnapshotFile, saveSnapshotFile } from "./snapshot-file.js";
import { DriftWatches } from "./watch.js";

// `drift`: "what changed on this host since we knew it was good?" A named
// baseline of some paths is kept in the agent's state directory (it survives
// restarts and upgrades: a versioned JSON file), and a check compares the
// present with it. Watches (watch.ts) do the same continuously and alert.

const dirOf = (stateDir: string) => join(stateDir, "drift");
const fileOf = (stateDir: string, name: string) => join(dirOf(stateDir), `${name}.json`);

function load(stateDir: string, name: string): SnapshotFile {
  let stored: SnapshotFile | undefined;
  try {
    stored = loadSnapshotFile(fileOf(stateDir, name));
  } catch (err) {
    throw new DragnetError(Codes.PARAMS, `drift: baseline "${name}": ${(err as Error).message}`);
  }
  if (!stored) {
    throw new DragnetError(
      Codes.PARAMS,
      `drift: no baseline named "${name}" on this agent; record one with: dragnet drift baseline --name ${name}`,
    );
  }
  return stored;
}

export const driftModule = defineModule({
  name: "drift",
  check: checkDrift,
  service: (host) => new DriftWatches(host),
  async run(p, ctx) {
    const o = driftOptions(p);
    const result: DriftResult = {
      mode: o.mode,
      name: o.name,
      baselineAtMs: 0,
      entries: 0,
      skipped: 0,
      changes: [],
      baselines: [],
      errors: [],
      hashesReused: 0,
      watches: [],
    };
    if (o.mode.startsWith("watch_")) {
      const watches = ctx.service;
      if (!watches) throw new DragnetError(Codes.MODULE_FAILED, "drift: this agent runs no watch service");
      if (o.mode === "watch_start") {
        const spec = { ...o, excludes: p.excludes, actionId: ctx.actionId ?? "" };
        result.watches = [await watches.add(spec, ctx.signal)];
      } else if (o.mode === "watch_stop") {
        result.watches = [await watches.remove(o.name)];
      } else {
        result.watches = watches.list();
      }
      return { found: result.watches.length > 0, result };
    }
    if (o.mode === "list") {
      let names: string[] = [];
      try {
        names = readdirSync(dirOf(ctx.stateDir)).filter((f) => f.endsWith(".json"));
      } catch {
        // none yet
      }
      for (const f of names.sort()) {
        try {
          const b = load(ctx.stateDir, f.slice(0, -5));
          const info: BaselineInfo = {
            name: b.name,
            createdAtMs: b.createdAtMs,
            entries: b.entries.length,
            bytes: statSync(fileOf(ctx.stateDir, b.name)).size,
            paths: b.paths,
          };
          result.baselines.push(info);
        } catch (err) {
          result.errors.push(`${f}: ${(err as Error).message}`);
        }
      }
      return { found: result.baselines.length > 0, result };
    }
    if (o.mode === "baseline") {
      const snap = await takeSnapshot({ ...o, signal: ctx.signal });
      const createdAtMs = Date.now();
      saveSnapshotFile(
        fileOf(ctx.stateDir, o.name),
        {
          version: FORMAT_VERSION,
          name: o.name,
          createdAtMs,
          paths: o.paths,
          excludes: p.excludes,
          maxEntries: o.maxEntries,
          maxContentBytes: o.maxContentBytes,
          skipped: snap.skipped,
        },
        snap.entries,
      );
      Object.assign(result, {
        baselineAtMs: createdAtMs,
        entries: snap.entries.size,
        skipped: snap.skipped,
        errors: snap.errors,
      });
      return { found: true, result };
    }
    const base = load(ctx.stateDir, o.name);
    const before = new Map(base.entries);
    const snap = await takeSnapshot({
      paths: base.paths,
      excludes: base.excludes.map((s) => new RegExp(s)),
      maxEntries: base.maxEntries,
      maxContentBytes: base.maxContentBytes,
      reuse: p.rehash ? undefined : before,
      signal: ctx.signal,
    });
    Object.assign(result, {
      baselineAtMs: base.createdAtMs,
      entries: snap.entries.size,
      skipped: snap.skipped,
      errors: snap.errors,
      hashesReused: snap.hashesReused,
      changes: compare(before, snap.entries),
    });
    await tagOrigins(result.changes, ctx.signal);
    return { found: result.changes.length > 0, result };
  },
});
