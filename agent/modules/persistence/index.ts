import { lstat } from "node:fs/promises";
import type { PersistenceEntry, PersistenceResult } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";
import { boundErrors } from "../error-list.js";
import { digestFile, HASH_CHUNK } from "../host/digest-file.js";
import { loadPackageFiles, type OwnedFile, packageLabel, packageRoot } from "../host/package-files.js";
import { readPasswd } from "../host/passwd.js";
import { defineModule } from "../registry.js";
import { timeSlicer } from "../time-slice.js";
import { checkPersistence, PERSISTENCE_KINDS } from "./check.js";
import { atEntries, clip, cronEntries } from "./cron.js";
import { type Kind, type RawEntry, type Root, resolveInRoot, rootOf } from "./entry.js";
import {
  initEntries,
  kernelModuleEntries,
  preloadEntries,
  rcLocalEntries,
  shellEntries,
  udevEntries,
} from "./sources.js";
import { GLOBAL_USER_UNIT_DIRS, homeUnitDirs, SYSTEM_UNIT_DIRS, scanUnits } from "./systemd.js";

// `persistence`: every place on the host that makes something start — cron
// and at, systemd units and timers (system, global user and each user's own),
// init scripts and rc.local, shell startup files, ld.so.preload, udev RUN
// rules, loaded kernel modules — each with its file's SHA-256, its owning
// package or "unowned", and flags for what deserves a look. `unowned` alone
// is the hunt for implants: what no package put there.

/** Entries sent at most (each a few hundred bytes, commands clipped: well under a message's 1 MB). */
export const MAX_ENTRIES = 2000;
/** Files larger than this are not hashed (a startup file or module is far smaller). */
const MAX_HASHED = 256 * 1024 * 1024;

interface FileFacts {
  sha256: string;
  /** The digest in the owning package's algorithm, when it records one. */
  packageDigest: string;
  mtimeMs: number;
}

async function collect(root: Root, kinds: Set<Kind>, errors: string[]): Promise<RawEntry[]> {
  const passwd = await readPasswd(root.dir);
  const needsUsers = kinds.has("shell") || kinds.has("systemd") || kinds.has("at");
  if (needsUsers) errors.push(...passwd.errors.slice(0, 5));
  const users = passwd.entries;
  const byUid = new Map(users.map((u) => [u.uid, u.name]));
  const out: RawEntry[] = [];
  const from = async (kind: Kind, read: () => Promise<RawEntry[]>) => {
    if (!kinds.has(kind)) return;
    try {
      out.push(...(await read()));
    } catch (err) {
      errors.push(`${kind}: ${(err as Error).message}`);
    }
  };
  await from("cron", () => cronEntries(root, errors));
  await from("at", () => atEntries(root, errors, (uid) => byUid.get(uid) ?? String(uid)));
  await from("systemd", async () => {
    const units = [
      ...(await scanUnits(root, SYSTEM_UNIT_DIRS, errors)),
      ...(await scanUnits(root, GLOBAL_USER_UNIT_DIRS, errors, { user: "(every user)" })),
    ];
    const homes = new Set<string>();
    for (const u of users) {
      if (!u.home.startsWith("/") || u.home === "/" || homes.has(u.home)) continue;
      homes.add(u.home);
      const dirs = homeUnitDirs(u.home);
      const own = new Set([dirs[0]!.path, dirs.at(-1)!.path]);
      units.push(...(await scanUnits(root, dirs, errors, { emitFrom: own, user: u.name })));
    }
    return units;
  });
  await from("initd", () => initEntries(root, errors));
  await from("rc_local", () => rcLocalEntries(root, errors));
  await from("shell", () => shellEntries(root, errors, users));
  await from("ld_preload", () => preloadEntries(root, errors));
  await from("udev", () => udevEntries(root, errors));
  await from("kernel_module", () => kernelModuleEntries(root, errors));
  return out;
}

export const persistenceModule = defineModule({
  name: "persistence",
  check: checkPersistence,
  async run(p, ctx) {
    const root = rootOf(packageRoot());
    const match = optionalRegex("persistence: match regex", p.match);
    const kinds = new Set<Kind>(p.kinds.length ? (p.kinds as Kind[]) : PERSISTENCE_KINDS);
    const result: PersistenceResult = { entries: [], errors: [], omitted: 0 };
    const raw = await collect(root, kinds, result.errors);
    // The content: a link's final target inside the root (none for a masked unit or a module without file).
    const contents = new Map<(typeof raw)[number], string | null | undefined>();
    for (const e of raw)
      contents.set(e, e.file !== undefined ? e.file : e.path ? await resolveInRoot(root, e.path) : undefined);
    // Owners of these paths only: a search of the package database, not all of it kept.
    const named = raw.flatMap((e) => [e.path, contents.get(e)]).filter((f): f is string => !!f);
    const files = await loadPackageFiles({ root: root.dir, only: [...new Set(named)], signal: ctx.signal });
    result.errors.push(...files.errors);

    const slice = timeSlicer(ctx.signal);
    const buffer = Buffer.allocUnsafe(HASH_CHUNK);
    const facts = new Map<string, FileFacts | undefined>();
    /** The file's hash (and its package's digest), once per file and algorithm. */
    const factsOf = async (file: string, owner?: OwnedFile): Promise<FileFacts | undefined> => {
      const algorithm = owner?.digest ? owner.algorithm : "";
      const key = `${file}\0${algorithm}`;
      if (facts.has(key)) return facts.get(key);
      let got: FileFacts | undefined;
      const st = await lstat(file).catch(() => undefined);
      if (st?.isFile() && st.size <= MAX_HASHED) {
        const digests = await digestFile(file, algorithm ? ["sha256", algorithm] : ["sha256"], buffer).catch(
          (err: Error) => {
            result.errors.push(`${file}: ${err.message}`);
            return undefined;
          },
        );
        if (digests)
          got = {
            sha256: digests.digests[0]!,
            packageDigest: digests.digests[1] ?? "",
            mtimeMs: Math.round(st.mtimeMs),
          };
      }
      facts.set(key, got);
      return got;
    };

    for (const e of raw) {
      await slice();
      if (match && !match.test(e.path) && !match.test(e.command) && !match.test(e.name)) continue;
      const file = contents.get(e);
      const owner = (e.path ? files.owner(e.path) : undefined) ?? (file ? files.owner(file) : undefined);
      if (p.unowned && owner) continue;
      if (result.entries.length >= MAX_ENTRIES) {
        result.omitted++;
        continue;
      }
      const out: PersistenceEntry = {
        kind: e.kind,
        path: e.path,
        // Every text an implant writes is clipped: one unit's megabyte ExecStart must not sink the answer.
        name: clip(e.name),
        command: clip(e.command),
        schedule: clip(e.schedule),
        state: e.state,
        user: clip(e.user),
        sha256: "",
        package: owner ? packageLabel(owner) : "",
        unowned: !owner,
        flags: [...e.flags],
        mtimeMs: 0,
      };
      const f = file ? await factsOf(file, owner) : undefined;
      if (f) {
        out.sha256 = f.sha256;
        out.mtimeMs = f.mtimeMs;
        // A changed conffile is a local edit more often than not: said, so it is told from a changed program.
        if (owner?.digest && f.packageDigest && f.packageDigest !== owner.digest)
          out.flags.push("modified", ...(owner.config ? ["conffile"] : []));
        if (e.skel && f.sha256 === (await factsOf(e.skel))?.sha256) out.flags.push("same-as-skel");
      } else if (e.path) {
        const st = await lstat(e.path).catch(() => undefined);
        out.mtimeMs = st ? Math.round(st.mtimeMs) : 0;
      }
      result.entries.push(out);
    }
    result.errors = boundErrors(result.errors);
    return { found: result.entries.length > 0, result };
  },
});
