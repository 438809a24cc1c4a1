import { Codes, DragnetError } from "../../../common/mod.js";
import type { FileMatch, FileSearch } from "../../../proto/mod.js";
import { absolutePath } from "../check-kit.js";

// One search of the file module, validated and compiled: what the walker
// needs to decide whether a file matches. Everything that can be wrong with a
// search is refused here, before any file is touched, with a message that
// names the search and the offending value.

export const FILE_DEFAULTS = {
  /** Deep enough for any real tree; bounded so a loop of bind mounts cannot run forever. */
  maxDepth: 64,
  matchLimit: 1000,
  maxErrors: 20,
} as const;

const MAX_ROOTS = 64;
const MAX_PATTERN = 4096;
const MAX_CRITERIA = 256;
const LIMITS = { matchLimit: 1_000_000, maxDepth: 1024, maxErrors: 100_000 };

/** Hash algorithms: the search/match field, Node's name for it, and its hex length. */
export const HASHES = {
  md5: { node: "md5", hex: 32 },
  sha1: { node: "sha1", hex: 40 },
  sha256: { node: "sha256", hex: 64 },
  sha384: { node: "sha384", hex: 96 },
  sha512: { node: "sha512", hex: 128 },
  sha3_224: { node: "sha3-224", hex: 56 },
  sha3_256: { node: "sha3-256", hex: 64 },
  sha3_384: { node: "sha3-384", hex: 96 },
  sha3_512: { node: "sha3-512", hex: 128 },
} as const;
export type HashName = keyof typeof HASHES;
export const HASH_NAMES = Object.keys(HASHES) as HashName[];

/** The FileSearch / FileMatch field holding each hash (ts-proto drops the underscore). */
export const HASH_FIELD = {
  md5: "md5",
  sha1: "sha1",
  sha256: "sha256",
  sha384: "sha384",
  sha512: "sha512",
  sha3_224: "sha3224",
  sha3_256: "sha3256",
  sha3_384: "sha3384",
  sha3_512: "sha3512",
} as const satisfies Record<HashName, keyof FileSearch & keyof FileMatch>;

/** MIG's names for families of hashes (in mismatch, and its sha2/sha3 digest lists). */
export const HASH_FAMILIES: Record<"sha2" | "sha3", HashName[]> = {
  sha2: ["sha256", "sha384", "sha512"],
  sha3: ["sha3_224", "sha3_256", "sha3_384", "sha3_512"],
};

export type CriterionKind = "name" | "content" | "size" | "mode" | "mtime" | HashName;
const KINDS = new Set<string>(["name", "content", "size", "mode", "mtime", ...HASH_NAMES]);

export interface RegexCheck {
  re: RegExp;
  invert: boolean;
  source: string;
}

/** A size or mtime bound: the value must be below, above or equal to `n`. */
export interface Bound {
  op: "<" | ">" | "=";
  n: number;
  source: string;
}

export interface CompiledSearch {
  label: string;
  roots: string[];
  names: RegexCheck[];
  contents: RegexCheck[];
  sizes: Bound[];
  modes: RegexCheck[];
  /** Bounds on age in milliseconds. */
  mtimes: Bound[];
  /** Per algorithm, the digests that hit (one check per algorithm). */
  hashes: Map<HashName, Set<string>>;
  /** Hashes to compute for a match: those asked for and those used as criteria. */
  report: Set<HashName>;
  matchAny: boolean;
  macroal: boolean;
  mismatch: Set<CriterionKind>;
  decompress: boolean;
  maxDepth: number;
  matchLimit: number;
  maxErrors: number;
}

function paramsError(label: string, message: string): DragnetError {
  return new DragnetError(Codes.PARAMS, `file search "${label}": ${message}`);
}

/** POSIX bracket classes (Go accepts them, JavaScript reads them as plain characters). */
const POSIX_CLASSES: Record<string, string> = {
  alnum: "A-Za-z0-9",
  alpha: "A-Za-z",
  blank: " \\t",
  cntrl: "\\x00-\\x1f\\x7f",
  digit: "0-9",
  graph: "!-~",
  lower: "a-z",
  print: " -~",
  punct: "!-\\/:-@\\[-`{-~",
  space: " \\t\\n\\r\\f\\v",
  upper: "A-Z",
  word: "\\w",
  xdigit: "0-9A-Fa-f",
};

class GoSyntaxError extends Error {}

/**
 * Go (RE2) syntax MIG actions use, in JavaScript's: \A and \z become ^ and $
 * (each line is matched on its own), [[:digit:]] and its kin become ranges.
 * What has no equivalent here (\Q…\E, \p{…}, \C) is refused rather than
 * left to mean something else.
 */
function fromGoSyntax(pattern: string): string {
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") {
      const n = pattern[i + 1] ?? "";
      i++;
      if (!inClass && n === "A") out += "^";
      else if (!inClass && n === "z") out += "$";
      else if ("QEpPC".includes(n) && n !== "")
        throw new GoSyntaxError(`\\${n} (Go/PCRE syntax) is not supported`);
      else out += c + n;
      continue;
    }
    if (inClass) {
      const posix = c === "[" && pattern[i + 1] === ":" ? /^\[:([a-z]+):\]/.exec(pattern.slice(i)) : null;
      if (posix && POSIX_CLASSES[posix[1]!]) {
        out += POSIX_CLASSES[posix[1]!];
        i += posix[0].length - 1;
        continue;
      }
      if (c === "]") inClass = false;
      out += c;
      continue;
    }
    if (c === "[") {
      inClass = true;
      out += c;
      if (pattern[i + 1] === "^") out += pattern[++i];
      // A leading ] is a member in Go; in JavaScript it would close the class.
      if (pattern[i + 1] === "]") {
        out += "\\]";
        i++;
      }
      continue;
    }
    out += c;
  }
  return out;
}

function compileRegex(label: string, source: string, what: string): RegexCheck {
  if (source.length > MAX_PATTERN)
    throw paramsError(label, `${what} is longer than ${MAX_PATTERN} characters`);
  const invert = source.startsWith("!");
  let pattern = invert ? source.slice(1) : source;
  // Go's leading inline flags (MIG actions use "(?i)…"), which JavaScript spells as flags.
  const inline = /^\(\?([ims]+)\)/.exec(pattern);
  const flags = inline ? [...new Set(inline[1])].join("") : "";
  if (inline) pattern = pattern.slice(inline[0].length);
  try {
    return { re: new RegExp(fromGoSyntax(pattern), flags), invert, source };
  } catch (err) {
    if (err instanceof GoSyntaxError)
      throw paramsError(label, `${what} ${JSON.stringify(source)}: ${err.message}`);
    throw paramsError(label, `${what} ${JSON.stringify(source)} does not compile: ${(err as Error).message}`);
  }
}

const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "N", "<N", ">N", N with an optional k/m/g/t suffix in powers of 1024 (MIG's size syntax). */
export function parseSize(label: string, source: string): Bound {
  const m = /^\s*([<>=]?)\s*(\d+)\s*([kmgt]?)b?\s*$/i.exec(source);
  if (!m) {
    throw paramsError(
      label,
      `size ${JSON.stringify(source)} is not N, <N or >N with an optional k/m/g/t suffix`,
    );
  }
  const n = Number(m[2]) * SIZE_UNITS[m[3]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw paramsError(label, `size ${JSON.stringify(source)} is too large`);
  return { op: (m[1] || "=") as Bound["op"], n, source };
}

const TIME_UNITS: Record<string, number> = { d: 86_400_000, h: 3_600_000, m: 60_000 };

/** "<N" (modified within) or ">N" (modified longer ago than), N with a d, h or m unit. */
export function parseMtime(label: string, source: string): Bound {
  const m = /^\s*([<>])\s*(\d+)\s*([dhm])\s*$/i.exec(source);
  if (!m) {
    throw paramsError(
      label,
      `mtime ${JSON.stringify(source)} is not <N (modified within) or >N (older than) with a d, h or m unit, e.g. <2d`,
    );
  }
  return { op: m[1] as "<" | ">", n: Number(m[2]) * TIME_UNITS[m[3]!.toLowerCase()]!, source };
}

/** Whether `value` is within the bound. */
export function within(b: Bound, value: number): boolean {
  return b.op === "<" ? value < b.n : b.op === ">" ? value > b.n : value === b.n;
}

/**
 * Roots normalised, duplicates dropped. Nested roots are kept (each has its
 * own depth budget): the walk examines each directory's files only once.
 */
function compileRoots(label: string, paths: string[]): string[] {
  if (paths.length === 0) throw paramsError(label, "no path to search (give at least one)");
  if (paths.length > MAX_ROOTS) throw paramsError(label, `more than ${MAX_ROOTS} paths`);
  const roots: string[] = [];
  for (const p of paths) {
    const n = absolutePath(p);
    if (n === undefined)
      throw paramsError(label, `path ${JSON.stringify(p.slice(0, 200))} is not an absolute path`);
    if (!roots.includes(n)) roots.push(n);
  }
  return roots;
}

/** Validates a search and prepares it; throws DragnetError(PARAMS) saying what is wrong. */
export function compileSearch(search: FileSearch, index: number): CompiledSearch {
  const label = search.label || `s${index + 1}`;
  const opts = search.options;
  // uint32 on the wire: a negative number sent by a buggy or hostile client
  // arrives as a huge one, so upper bounds catch it.
  const bounded = (v: number | undefined, name: string, min: number, max: number, dflt: number) => {
    const n = v ?? dflt;
    if (n < min || n > max) throw paramsError(label, `${name} must be between ${min} and ${max} (got ${n})`);
    return n;
  };
  const matchLimit = bounded(opts?.matchLimit, "matchlimit", 1, LIMITS.matchLimit, FILE_DEFAULTS.matchLimit);
  const maxDepth = bounded(opts?.maxDepth, "maxdepth", 0, LIMITS.maxDepth, FILE_DEFAULTS.maxDepth);
  const maxErrors = bounded(opts?.maxErrors, "maxerrors", 0, LIMITS.maxErrors, FILE_DEFAULTS.maxErrors);

  const hashCount = HASH_NAMES.reduce((n, h) => n + search[HASH_FIELD[h]].length, 0);
  const total =
    search.names.length +
    search.contents.length +
    search.sizes.length +
    search.modes.length +
    search.mtimes.length +
    hashCount;
  if (total > MAX_CRITERIA) throw paramsError(label, `more than ${MAX_CRITERIA} criteria`);

  const hashes = new Map<HashName, Set<string>>();
  for (const h of HASH_NAMES) {
    const values = search[HASH_FIELD[h]];
    if (values.length === 0) continue;
    const set = new Set<string>();
    for (const v of values) {
      if (!new RegExp(`^[0-9a-fA-F]{${HASHES[h].hex}}$`).test(v)) {
        throw paramsError(label, `${JSON.stringify(v)} is not a ${h} digest (${HASHES[h].hex} hex digits)`);
      }
      set.add(v.toLowerCase());
    }
    hashes.set(h, set);
  }
  const report = new Set<HashName>(hashes.keys());
  for (const h of opts?.returnHashes ?? []) {
    const name = h.trim().toLowerCase().replace("-", "_") as HashName;
    if (!Object.hasOwn(HASHES, name)) {
      throw paramsError(label, `cannot return hash "${h}" (known: ${HASH_NAMES.join(", ")})`);
    }
    report.add(name);
  }
  const mismatch = new Set<CriterionKind>();
  for (const k of opts?.mismatch ?? []) {
    const kind = k.trim().toLowerCase();
    // MIG's names for families of hashes.
    if (kind === "sha2" || kind === "sha3") {
      for (const h of HASH_FAMILIES[kind]) mismatch.add(h);
      continue;
    }
    if (!KINDS.has(kind)) {
      throw paramsError(label, `cannot mismatch "${k}" (known: ${[...KINDS].join(", ")}, sha2, sha3)`);
    }
    mismatch.add(kind as CriterionKind);
  }
  return {
    label,
    roots: compileRoots(label, search.paths),
    names: search.names.map((n) => compileRegex(label, n, "name regex")),
    contents: search.contents.map((n) => compileRegex(label, n, "content regex")),
    sizes: search.sizes.map((s) => parseSize(label, s)),
    modes: search.modes.map((n) => compileRegex(label, n, "mode regex")),
    mtimes: search.mtimes.map((s) => parseMtime(label, s)),
    hashes,
    report,
    matchAny: opts?.matchAny ?? false,
    macroal: opts?.macroal ?? false,
    mismatch,
    decompress: opts?.decompress ?? false,
    maxDepth,
    matchLimit,
    maxErrors,
  };
}
