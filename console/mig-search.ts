import { FileSearch, FileSearchOptions } from "../proto/mod.js";

// File searches written as MIG writes them — an object of named searches,
// each with paths, criteria lists and options — turned into Dragnet's
// FileSearch. `dragnet file --searches FILE` and `dragnet action import` both
// read this form. Unknown keys are refused, never dropped: a criterion lost
// on the way would widen or narrow a search without anyone noticing.

const LIST_FIELDS = ["paths", "names", "contents", "sizes", "modes", "mtimes"] as const;
const HASH_FIELDS = {
  md5: "md5",
  sha1: "sha1",
  sha256: "sha256",
  sha384: "sha384",
  sha512: "sha512",
  sha3_224: "sha3224",
  sha3_256: "sha3256",
  sha3_384: "sha3384",
  sha3_512: "sha3512",
} as const;
/** MIG's "sha2" and "sha3" lists hold digests of several lengths; the length says which variant. */
const BY_LENGTH: Record<"sha2" | "sha3", Record<number, keyof typeof HASH_FIELDS>> = {
  sha2: { 64: "sha256", 96: "sha384", 128: "sha512" },
  sha3: { 56: "sha3_224", 64: "sha3_256", 96: "sha3_384", 128: "sha3_512" },
};
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
]);

export class SearchFormatError extends Error {}

function stringList(label: string, key: string, value: unknown): string[] {
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

function optionsOf(label: string, raw: unknown): Partial<FileSearchOptions> {
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
  const returnHashes = o.returnhashes === undefined ? [] : stringList(label, "returnhashes", o.returnhashes);
  if (flag("returnsha256") && !returnHashes.includes("sha256")) returnHashes.push("sha256");
  return {
    maxDepth: o.maxdepth === undefined ? undefined : count(label, "maxdepth", o.maxdepth),
    matchLimit: o.matchlimit === undefined ? undefined : count(label, "matchlimit", o.matchlimit),
    maxErrors: o.maxerrors === undefined ? undefined : count(label, "maxerrors", o.maxerrors),
    matchAny: flag("matchany"),
    macroal: flag("macroal"),
    mismatch: o.mismatch === undefined ? [] : stringList(label, "mismatch", o.mismatch),
    decompress: flag("decompress"),
    returnHashes,
  };
}

/** One search in MIG's form. */
export function searchFromMig(label: string, raw: unknown): FileSearch {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SearchFormatError(`search "${label}" must be an object`);
  }
  const s = raw as Record<string, unknown>;
  const out: Record<string, unknown> = { label };
  const hashes: Record<string, string[]> = {};
  for (const [key, value] of Object.entries(s)) {
    if (key === "options") continue;
    if ((LIST_FIELDS as readonly string[]).includes(key)) {
      out[key] = stringList(label, key, value);
    } else if (key in HASH_FIELDS) {
      const field = HASH_FIELDS[key as keyof typeof HASH_FIELDS];
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
        const field = HASH_FIELDS[variant];
        hashes[field] = [...(hashes[field] ?? []), digest];
      }
    } else {
      throw new SearchFormatError(
        `search "${label}": unknown criterion "${key}" (known: ${[...LIST_FIELDS, ...Object.keys(HASH_FIELDS), "sha2", "sha3", "options"].join(", ")})`,
      );
    }
  }
  return FileSearch.fromPartial({
    ...out,
    ...hashes,
    options: FileSearchOptions.fromPartial(optionsOf(label, s.options)),
  } as FileSearch);
}

/** `{"label": {search}, …}`, the value of MIG's file parameters "searches". */
export function searchesFromMig(raw: unknown): FileSearch[] {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SearchFormatError('searches must be an object of named searches: {"s1": {"paths": […], …}}');
  }
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length === 0) throw new SearchFormatError("there is no search");
  return entries.map(([label, s]) => searchFromMig(label, s));
}
