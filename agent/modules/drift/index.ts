import { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Codes, DragnetError, writeFileAtomicParts } from "../../../common/mod.js";
import type { BaselineInfo, DriftParams, DriftResult } from "../../../proto/mod.js";
import { absolutePath, userRegex } from "../params.js";
import { defineModule } from "../registry.js";
import { compare } from "./compare.js";
import { type SnapshotEntry, takeSnapshot } from "./snapshot.js";

// `drift`: "what changed on this host since we knew it was good?" A named
// baseline of some paths is kept in the agent's state directory (it survives
// restarts and upgrades: a versioned JSON file), and a check compares the
// present with it.

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const DEFAULTS = { maxEntries: 200_000, maxContentBytes: 65_536 };
const LIMITS = { maxEntries: 2_000_000, maxContentBytes: 1024 * 1024 };
const FORMAT_VERSION = 2;

interface StoredBaseline {
  version: number;
  name: string;
  createdAtMs: number;
  paths: string[];
  excludes: string[];
  maxEntries: number;
  maxContentBytes: number;
  skipped: number;
  entries: Array<[string, SnapshotEntry]>;
}

function params(p: DriftParams) {
  const fail = (message: string): never => {
    throw new DragnetError(Codes.PARAMS, `drift: ${message}`);
  };
  const mode = p.mode || "check";
  if (!["baseline", "check", "list"].includes(mode)) fail(`mode is baseline, check or list, not "${p.mode}"`);
  const name = p.name || "default";
  if (!NAME.test(name))
    fail(`baseline name "${name.slice(0, 80)}" may hold only letters, digits, . _ - (at most 64)`);
  if (mode === "baseline" && p.paths.length === 0) fail("a baseline needs at least one path");
  if (p.paths.length > 64) fail("more than 64 paths");
  const paths = [
    ...new Set(
      p.paths.map((path) => absolutePath(path) ?? fail(`path "${path.slice(0, 200)}" is not absolute`)),
    ),
  ];
  if (p.excludes.length > 64) fail("more than 64 excludes");
  const excludes = p.excludes.map((source) => userRegex("drift: exclude regex", source));
  const maxEntries = p.maxEntries ?? DEFAULTS.maxEntries;
  const maxContentBytes = p.maxContentBytes ?? DEFAULTS.maxContentBytes;
  if (maxEntries < 1 || maxEntries > LIMITS.maxEntries)
    fail(`max entries must be between 1 and ${LIMITS.maxEntries}`);
  if (maxContentBytes > LIMITS.maxContentBytes)
    fail(`max content bytes must be at most ${LIMITS.maxContentBytes}`);
  return { mode, name, paths, excludes, maxEntries, maxContentBytes };
}

const dirOf = (stateDir: string) => join(stateDir, "drift");
const fileOf = (stateDir: string, name: string) => join(dirOf(stateDir), `${name}.json`);

function load(stateDir: string, name: string): StoredBaseline {
  let text: string;
  try {
    text = readFileSync(fileOf(stateDir, name), "utf8");
  } catch {
    throw new DragnetError(
      Codes.PARAMS,
      `drift: no baseline named "${name}" on this agent; record one with: dragnet drift baseline --name ${name}`,
    );
  }
  const stored = JSON.parse(text) as StoredBaseline;
  if (stored.version !== FORMAT_VERSION) {
    throw new DragnetError(
      Codes.PARAMS,
      `drift: baseline "${name}" has format ${stored.version}; record it again`,
    );
  }
  return stored;
}

export const driftModule = defineModule({
  name: "drift",
  kind: "investigation",
  summary: "record a baseline of paths, and report what changed since (with diffs)",
  check(p) {
    params(p);
  },
  async run(p, ctx) {
    const o = params(p);
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
    };
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
      const stored: StoredBaseline = {
        version: FORMAT_VERSION,
        name: o.name,
        createdAtMs: Date.now(),
        paths: o.paths,
        excludes: p.excludes,
        maxEntries: o.maxEntries,
        maxContentBytes: o.maxContentBytes,
        skipped: snap.skipped,
        entries: [...snap.entries],
      };
      mkdirSync(dirOf(ctx.stateDir), { recursive: true, mode: 0o700 });
      // Entry by entry: a big tree's baseline is hundreds of MB, never one string.
      const { entries, ...header } = stored;
      writeFileAtomicParts(
        fileOf(ctx.stateDir, o.name),
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
      Object.assign(result, {
        baselineAtMs: stored.createdAtMs,
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
    return { found: result.changes.length > 0, result };
  },
});
