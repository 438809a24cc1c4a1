// The benches' file tree: at least 40,000 files and 1 GB copied from /usr/lib
// and /usr/share/doc into bench/.cache/file-tree, made once and reused
// (bench:file, bench:yara).
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { ROOT } from "../test/helpers/cli.js";

export const TREE = join(ROOT, "bench", ".cache", "file-tree");
const MARKER = join(ROOT, "bench", ".cache", "file-tree.json");
const MIN_FILES = 40_000;
const MIN_BYTES = 1024 ** 3;
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

/** Regular files under dir, depth first in name order (symlinks and special files skipped). */
export function* regularFiles(dir: string): Generator<{ path: string; size: number }> {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const name of names) {
    const path = join(dir, name);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (st?.isDirectory()) yield* regularFiles(path);
    else if (st?.isFile()) yield { path, size: st.size };
  }
}

/** Copies /usr/share/doc, then /usr/lib until the tree is big enough. */
export function buildTree(): { files: number; bytes: number } {
  if (existsSync(MARKER)) return JSON.parse(readFileSync(MARKER, "utf8"));
  log(`building ${TREE} (once)…`);
  let files = 0;
  let bytes = 0;
  const copy = (source: string, under: string) => {
    for (const f of regularFiles(source)) {
      if (files >= MIN_FILES && bytes >= MIN_BYTES) return;
      const to = join(TREE, under, relative(source, f.path));
      mkdirSync(dirname(to), { recursive: true });
      try {
        copyFileSync(f.path, to);
      } catch {
        continue; // unreadable: not part of the tree
      }
      files++;
      bytes += f.size;
    }
  };
  copy("/usr/share/doc", "doc");
  copy("/usr/lib", "lib");
  if (files < MIN_FILES || bytes < MIN_BYTES) {
    throw new Error(`this machine's /usr/lib and /usr/share/doc hold only ${files} files, ${bytes} bytes`);
  }
  writeFileSync(MARKER, JSON.stringify({ files, bytes }));
  return { files, bytes };
}
