import { lstatSync, statSync } from "node:fs";
import { HASH_FAMILIES, HASH_FIELD, HASH_NAMES, HASHES, type HashName } from "../agent/modules/checks.js";
import { FileSearch, FileSearchOptions } from "../proto/api.js";

// File searches written as MIG writes them — an object of named searches,
// each with paths, criteria lists and options — turned into Dragnet's
// FileSearch. `dragnet file --searches FILE` and `dragnet action import` both
// read this form. Unknown keys are refused, never dropped: a criterion lost
// on the way would widen or narrow a search without anyone noticing.

const LIST_FIELDS = ["paths", "names", "contents", "sizes", "modes", "mtimes"] as const;
/** MIG's "sha2" and "sha3" lists hold digests of several lengths; the length says which variant. */
const BY_LENGTH = Object.fromEntries(
  Object.entries(HASH_FAMILIES).map(([family, names]) => [
    family,
    Object.fromEntries(names.map((h) => [HASHES[h].hex, h])) as Record<number, HashName>,
  ]),
) as Record<keyof typeof HASH_FAMILIES, Record<number, HashName>>;
const OPTION_KEYS = new Set([
  "maxdepth",
  "matchlimit",
  "maxerrors",
  "matchall",
  "matchany",
  "macroal",
  "mismatch",
  "decompress",
  "returnhashes",
  "returnsha256", // MIG's older spelling of returnhashes: ["sha256"]
  "debug", // MIG's agent-side logging: nothing to carry
  "remotefs", // MIG skips network filesystems unless set; Dragnet always searches them (noted)
]);

/**
 * How a search's JSON is read. "mig": as MIG reads it — without `matchall` a
 * file matches when any check hits, 0 for maxdepth/matchlimit/maxerrors means
 * "no limit", and `<N`/`>N` sizes include N. "dragnet": the console's flags,
 * with Dragnet's defaults (every check must hit).
 */
export type SearchForm = "mig" | "dragnet";

/** What a conversion changed or could not carry exactly, to show the investigator. */
export type Notes = string[];

export class SearchFormatError extends Error {}

function stringList(label: string, key: string, value: unknown): string[] {
  // Go marshals an unset list as null: MIG's own actions carry "mismatch": null and the like.
  if (value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new SearchFormatError(`search "${label}": "${key}" must be a list of strings`);
  }
  return value as string[];
}

function count(label: string, key: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new SearchFormatError(`search "${label}": option "${key}" must be a whole number ≥ 0`);
  }
  return value;
}

function optionsOf(label: string, raw: unknown, form: SearchForm, notes: Notes): Partial<FileSearchOptions> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new SearchFormatError(`search "${label}": "options" must be an object`);
  }
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!OPTION_KEYS.has(k)) {
      throw new SearchFormatError(
        `search "${label}": unknown option "${k}" (known: ${[...OPTION_KEYS].join(", ")})`,
      );
    }
  }
  const flag = (k: string) => {
    if (o[k] === undefined) return false;
    if (typeof o[k] !== "boolean")
      throw new SearchFormatError(`search "${label}": option "${k}" must be true or false`);
    return o[k] as boolean;
  };
  if (flag("matchall") && flag("matchany")) {
    throw new SearchFormatError(`search "${label}": matchall and matchany cannot both be set`);
  }
  const returnHashes = o.returnhashes == null ? [] : stringList(label, "returnhashes", o.returnhashes);
  if (o.remotefs !== undefined && form === "mig") {
    notes.push(`search "${label}": remotefs ignored — Dragnet searches every filesystem under the paths`);
  }
  // MIG's 0 means "no limit": Dragnet's default bound is used instead, and said so.
  const limit = (key: "maxdepth" | "matchlimit" | "maxerrors") => {
    if (o[key] === undefined || o[key] === null) return undefined;
    const n = count(label, key, o[key]);
    if (n === 0 && form === "mig") {
      notes.push(`search "${label}": ${key} 0 means no limit in MIG; Dragnet's default ${key} is used`);
      return undefined;
    }
    if (key === "maxdepth" && form === "mig") {
      // MIG's agents enter a root at depth 1 and examine a directory while its depth is at
      // most maxdepth (modules/file/file.go, pathWalk); Dragnet's root is depth 0.
      notes.push(
        `search "${label}": maxdepth ${n} becomes ${n - 1} — MIG's agents count the root as depth 1 (their code; MIG's documentation says otherwise), Dragnet counts it as 0: the same directories are searched`,
      );
      return n - 1;
    }
    return n;
  };
  const matchAny = o.matchany !== undefined ? flag("matchany") : form === "mig" ? !flag("matchall") : false;
  if (flag("returnsha256") && !returnHashes.includes("sha256")) returnHashes.push("sha256");
  return {
    maxDepth: limit("maxdepth"),
    matchLimit: limit("matchlimit"),
    maxErrors: limit("maxerrors"),
    matchAny,
    macroal: flag("macroal"),
    mismatch: o.mismatch == null ? [] : stringList(label, "mismatch", o.mismatch),
    decompress: flag("decompress"),
    returnHashes,
  };
}

const SIZE = /^\s*([<>]?)\s*(\d+)\s*([kmgt]?)\s*$/i;
const UNIT: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** MIG's `<N` and `>N` include N; Dragnet's exclude it: the bound moves by one byte. */
function migSize(size: string): string {
  const m = SIZE.exec(size);
  if (!m?.[1]) return size;
  const n = Number(m[2]) * UNIT[m[3]!.toLowerCase()]!;
  return m[1] === "<" ? `<${n + 1}` : `>${Math.max(0, n - 1)}`;
}

/** A path that is a symbolic link to a directory here (on the console's machine: hosts tend to agree, /bin → usr/bin). */
function linksToDirectory(path: string): boolean {
  try {
    return lstatSync(path.replace(/\/+$/, "") || "/").isSymbolicLink() && statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** One search in MIG's form. */
export function searchFromMig(
  label: string,
  raw: unknown,
  form: SearchForm = "mig",
  notes: Notes = [],
): FileSearch {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SearchFormatError(`search "${label}" must be an object`);
  }
  const s = raw as Record<string, unknown>;
  const out: Record<string, unknown> = { label };
  const hashes: Record<string, string[]> = {};
  for (const [key, value] of Object.entries(s)) {
    if (key === "options" || key === "description") continue;
    if (key === "sizes" && form === "mig") {
      out.sizes = stringList(label, key, value).map(migSize);
    } else if ((LIST_FIELDS as readonly string[]).includes(key)) {
      out[key] = stringList(label, key, value);
    } else if (Object.hasOwn(HASH_FIELD, key)) {
      const field = HASH_FIELD[key as HashName];
      hashes[field] = [...(hashes[field] ?? []), ...stringList(label, key, value)];
    } else if (key === "sha2" || key === "sha3") {
      for (const digest of stringList(label, key, value)) {
        const variant = BY_LENGTH[key][digest.length];
        if (!variant) {
          const lengths = Object.keys(BY_LENGTH[key]).join(", ");
          throw new SearchFormatError(
            `search "${label}": ${key} digest ${JSON.stringify(digest)} has ${digest.length} characters (expected ${lengths})`,
          );
        }
        const field = HASH_FIELD[variant];
        hashes[field] = [...(hashes[field] ?? []), digest];
      }
    } else {
      throw new SearchFormatError(
        `search "${label}": unknown criterion "${key}" (known: ${[...LIST_FIELDS, ...HASH_NAMES, "sha2", "sha3", "options"].join(", ")})`,
      );
    }
  }
  if (form === "mig") {
    for (const path of (out.paths as string[] | undefined) ?? []) {
      if (linksToDirectory(path)) {
        notes.push(
          `search "${label}": ${path} is a symbolic link to a directory (on this machine): MIG's agents did not search such a root (a warning, no results), Dragnet searches it — expect results MIG never reported`,
        );
      }
    }
  }
  if (form === "mig" && Array.isArray(out.modes) && out.modes.length > 0) {
    notes.push(
      `search "${label}": modes are matched against ls-style strings (-rwsr-xr-x); MIG used Go's, which write setuid, setgid and sticky as leading u, g, t`,
    );
  }
  return FileSearch.fromPartial({
    ...out,
    ...hashes,
    options: FileSearchOptions.fromPartial(optionsOf(label, s.options, form, notes)),
  } as FileSearch);
}

/** `{"label": {search}, …}`, the value of MIG's file parameters "searches". */
export function searchesFromMig(raw: unknown, notes: Notes = []): FileSearch[] {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SearchFormatError('searches must be an object of named searches: {"s1": {"paths": […], …}}');
  }
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length === 0) throw new SearchFormatError("there is no search");
  return entries.map(([label, s]) => searchFromMig(label, s, "mig", notes));
}
