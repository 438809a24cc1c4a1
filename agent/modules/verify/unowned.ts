import { lstat, open, readdir, realpath } from "node:fs/promises";
import { join } from "node:path";
import type { VerifyFinding } from "../../../proto/mod.js";
import { digestFile, HASH_CHUNK } from "../host/digest-file.js";
import type { PackageFiles } from "../host/package-files.js";
import { timeSlicer } from "../time-slice.js";
import { underPseudo } from "./check.js";

// Executables and shared libraries under system paths that no package owns:
// what an intruder leaves behind (a dropped binary in /usr/bin, a preloaded
// library in /usr/lib). A walk that stays on real files (no /proc, /sys, /dev,
// no symlinked directories), bounded in depth and in entries.

const MAX_DEPTH = 32;
const MAX_ENTRIES = 2_000_000;
/** "libfoo.so", "libfoo.so.1.2.3": a shared library by name, whatever its mode. */
const SO_NAME = /\.so(?:\.\d+)*$/;
const ELF_MAGIC = 0x7f454c46;

export interface UnownedSearch {
  findings: VerifyFinding[];
  scanned: number;
  /** Unowned files found beyond `room`. */
  omitted: number;
  errors: string[];
}

/** True when the file starts with ELF's magic number (executables, libraries, objects). */
async function isElf(path: string, buffer: Buffer): Promise<boolean> {
  try {
    const fh = await open(path, "r");
    try {
      const { bytesRead } = await fh.read(buffer, 0, 4, 0);
      return bytesRead === 4 && buffer.readUInt32BE(0) === ELF_MAGIC;
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

/**
 * Walks `dirs` (host paths, under `root` when it is not "/") and returns the
 * regular files no package owns that are executable (any x bit), named like
 * a shared library, or ELF; at most `room` of them with their SHA-256.
 */
export async function findUnowned(
  dirs: readonly string[],
  root: string,
  files: PackageFiles,
  room: number,
  signal: AbortSignal,
): Promise<UnownedSearch> {
  const out: UnownedSearch = { findings: [], scanned: 0, omitted: 0, errors: [] };
  const slice = timeSlicer(signal);
  const buffer = Buffer.allocUnsafe(HASH_CHUNK);
  const rootPrefix = root === "/" ? "" : root;
  const walked = new Set<string>();
  /** The path inside the root, for the pseudo-file-system test. */
  const inner = (path: string) => (rootPrefix ? path.slice(rootPrefix.length) || "/" : path);

  for (const dir of dirs) {
    // A symlinked start (/bin → usr/bin) is searched where it leads, once.
    let start: string;
    try {
      start = await realpath(join(root, dir));
    } catch (err) {
      out.errors.push(`${dir}: ${(err as Error).message}`);
      continue;
    }
    if (rootPrefix && start !== rootPrefix && !start.startsWith(`${rootPrefix}/`)) {
      out.errors.push(`${dir}: leads out of ${root} (${start})`);
      continue;
    }
    const stack: [string, number][] = [[start, 0]];
    while (stack.length) {
      const [at, depth] = stack.pop()!;
      if (walked.has(at) || underPseudo(inner(at))) continue;
      walked.add(at);
      let entries: import("node:fs").Dirent[];
      try {
        entries = await readdir(at, { withFileTypes: true });
      } catch (err) {
        out.errors.push(`${at}: ${(err as Error).message}`);
        continue;
      }
      entries.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
      for (const e of entries) {
        await slice();
        if (++out.scanned > MAX_ENTRIES) {
          out.errors.push(`the unowned search stopped after ${MAX_ENTRIES} entries`);
          return out;
        }
        const path = join(at, e.name);
        if (e.isDirectory()) {
          if (depth + 1 < MAX_DEPTH) stack.push([path, depth + 1]);
          else out.errors.push(`${path}: deeper than ${MAX_DEPTH} levels, not searched`);
          continue;
        }
        if (!e.isFile() || files.owner(path)) continue;
        let st: Awaited<ReturnType<typeof lstat>>;
        try {
          st = await lstat(path);
        } catch {
          continue; // gone since the listing
        }
        const wanted = (Number(st.mode) & 0o111) !== 0 || SO_NAME.test(e.name) || (await isElf(path, buffer));
        if (!wanted) continue;
        if (out.findings.length >= room) {
          out.omitted++;
          continue;
        }
        const sha256 = await digestFile(path, ["sha256"], buffer).then(
          (d) => d.digests[0]!,
          () => "",
        );
        out.findings.push({
          path,
          kind: "unowned",
          package: "",
          manager: "",
          algorithm: "",
          expected: "",
          actual: "",
          config: false,
          sha256,
          size: Number(st.size),
          mtimeMs: Math.round(Number(st.mtimeMs)),
        });
      }
    }
  }
  return out;
}
