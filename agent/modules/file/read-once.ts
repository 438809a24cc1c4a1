import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import { gunzipSync } from "node:zlib";
import { HASHES, type HashName, type RegexCheck } from "./criteria.js";
import { requiredLiteral } from "./literal.js";
import { findLiteral, type Literal, prepareLiteral } from "./literal-search.js";

// Reading a file once for everything a search asks of its content: the
// content regexes (line by line) and every hash wanted, from the same bytes.

/** What one read takes; search workers allocate one buffer this size and reuse it. */
export const CHUNK = 1024 * 1024;
/**
 * The longest line content regexes are tried on. A longer one is an error for
 * that file (its content cannot be searched line by line), never skipped in
 * silence and never cut into pieces that would change what ^ and $ mean.
 */
export const MAX_LINE = 16 * 1024 * 1024;

/** The command was cancelled or ran out of time while a file was being read. */
export class SearchAbortedError extends Error {
  constructor() {
    super("search stopped");
  }
}

export class LineTooLongError extends Error {
  constructor() {
    super(`a line longer than ${MAX_LINE / 1048576} MiB: content not searched`);
  }
}

export interface ReadPlan {
  contents: RegexCheck[];
  macroal: boolean;
  hashes: HashName[];
  decompress: boolean;
}

export interface ReadOutcome {
  /** Per content check, whether it hit (its `!` inversion applied). */
  contentHits: boolean[];
  digests: Partial<Record<HashName, string>>;
  bytes: number;
}

interface LineState {
  check: RegexCheck;
  /** Finds candidate lines: the pattern with the g and m flags. */
  scan: RegExp;
  /** "any": hits at the first matching line; "all" (macroal): misses at the first line that does not match. */
  mode: "any" | "all";
  decided: boolean;
  hit: boolean;
  /** Bytes every matching line contains (any-mode, byte-matched patterns only): see literal.ts. */
  literal?: Literal;
}

/**
 * Content regexes applied line by line over a stream of text. ASCII-only
 * patterns are matched on bytes (latin1, like grep in the C locale); others
 * on UTF-8 text.
 */
export class LineMatcher {
  private carry = "";
  /** The carry's last characters: what a literal could straddle into the next chunk (no flattening of a long carry). */
  private carryEnd = "";
  /** The longest literal's length less one. */
  private readonly seamLength: number;
  /**
   * The carry is known to hold no literal of an undecided check (it was checked
   * with the chunks it came from): not searched again. Searching a carry that grows
   * chunk by chunk (a file with no newline for megabytes) was quadratic.
   */
  private carryChecked = true;
  private sawLine = false;
  private readonly states: LineState[];
  private readonly decoder: StringDecoder;
  private readonly bytewise: boolean;

  constructor(checks: RegexCheck[], macroal: boolean) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
    this.bytewise = checks.every((c) => /^[\x00-\x7f]*$/.test(c.re.source));
    this.decoder = new StringDecoder(this.bytewise ? "latin1" : "utf8");
    this.states = checks.map((check) => {
      const mode = macroal && !check.invert ? "all" : "any";
      return {
        check,
        scan: new RegExp(check.re.source, [...new Set(`${check.re.flags}gm`)].join("")),
        mode,
        decided: false,
        hit: false,
        literal: this.bytewise && mode === "any" ? literalOf(check.re) : undefined,
      };
    });
    this.seamLength = Math.max(0, ...this.states.map((s) => (s.literal?.text.length ?? 1) - 1));
  }

  /** The partial line kept for the next chunk; `appended` when it is the last carry with this added. */
  private keep(carry: string, appended?: string): void {
    this.carry = carry;
    const n = this.seamLength;
    this.carryEnd =
      appended === undefined
        ? carry.slice(carry.length - n)
        : (this.carryEnd + appended.slice(Math.max(0, appended.length - n))).slice(-n || Infinity);
  }

  /**
   * Whether no line ending in this chunk can match: every undecided check has
   * a literal, and none occurs in the chunk, the partial line before it, or
   * across their boundary.
   */
  private cannotMatch(chunk: Buffer): boolean {
    const open = this.states.filter((s) => !s.decided);
    if (!this.bytewise || open.length === 0 || open.some((s) => !s.literal)) return false;
    return open.every((s) => {
      const lit = s.literal!;
      if (findLiteral(chunk, lit) >= 0 || (!this.carryChecked && this.carry.includes(lit.text))) return false;
      const k = lit.text.length;
      const seam = this.carryEnd.slice(this.carryEnd.length - (k - 1)) + chunk.toString("latin1", 0, k - 1);
      return !seam.includes(lit.text);
    });
  }

  get done(): boolean {
    return this.states.every((s) => s.decided);
  }

  push(chunk: Buffer): void {
    if (this.cannotMatch(chunk)) {
      // Only the partial line at the end is kept (decoded): it may yet meet a literal in the next chunk.
      const last = chunk.lastIndexOf(0x0a);
      if (last >= 0) {
        this.sawLine = true;
        this.keep(chunk.toString("latin1", last + 1));
      } else {
        const piece = chunk.toString("latin1");
        this.keep(this.carry + piece, piece);
        if (this.carry.length > MAX_LINE) throw new LineTooLongError();
      }
      this.carryChecked = true;
      return;
    }
    this.carryChecked = false;
    const text = this.carry + this.decoder.write(chunk);
    const last = text.lastIndexOf("\n");
    if (last < 0) {
      this.keep(text);
      if (this.carry.length > MAX_LINE) throw new LineTooLongError();
      return;
    }
    this.lines(text, last, false);
    this.keep(text.slice(last + 1));
  }

  /** Ends the stream; returns each check's outcome. */
  end(): boolean[] {
    const rest = this.carry + this.decoder.end();
    if (rest.length > 0) this.lines(rest, rest.length, true);
    return this.states.map((s) => {
      const hit = s.decided ? s.hit : s.mode === "all" ? this.sawLine : false;
      return s.check.invert ? !hit : hit;
    });
  }

  /** Applies the checks to the lines in text[0, end); `whole` when that span is one line (the last, unterminated). */
  private lines(text: string, end: number, whole: boolean): void {
    this.sawLine = true;
    for (const s of this.states) {
      if (s.decided) continue;
      if (s.mode === "all") {
        const lines = whole ? [text.slice(0, end)] : text.slice(0, end).split("\n");
        if (lines.some((line) => !s.check.re.test(line))) {
          s.decided = true;
          s.hit = false;
        }
        continue;
      }
      // Search the span at once and confirm a candidate on its own line: one
      // pass of the regex engine instead of a string per line.
      let from = 0;
      while (from <= end) {
        s.scan.lastIndex = from;
        const m = s.scan.exec(text);
        if (!m || m.index > end) break;
        const start = whole ? 0 : text.lastIndexOf("\n", m.index - 1) + 1;
        let stop = whole ? end : text.indexOf("\n", m.index);
        if (stop < 0 || stop > end) stop = end;
        if (s.check.re.test(text.slice(start, stop))) {
          s.decided = true;
          s.hit = true;
          break;
        }
        from = stop + 1;
      }
    }
  }
}

/** Each regex's literal, prepared once per search (not per file): see literal.ts and literal-search.ts. */
const literals = new WeakMap<RegExp, Literal | null>();

function literalOf(re: RegExp): Literal | undefined {
  let literal = literals.get(re);
  if (literal === undefined) {
    const text = requiredLiteral(re);
    literal = text === undefined ? null : prepareLiteral(text);
    literals.set(re, literal);
  }
  return literal ?? undefined;
}

/** Compressed files bigger than this are not decompressed (gzip has no bounded synchronous stream in Node). */
export const GZIP_INPUT_MAX = 64 * 1024 * 1024;
/** …nor is more than this much decompressed output kept: a zip bomb is an error, not an outage. */
export const GZIP_OUTPUT_MAX = 256 * 1024 * 1024;

/**
 * Reads `path` once, synchronously (it runs on a search worker thread, where
 * blocking calls are cheaper than round trips to the thread pool), and
 * returns what `plan` asks: content outcomes and digests. Stops early when
 * every content check is decided and no hash is wanted. `buffer` is reused
 * from file to file.
 */
export function readOnce(
  path: string,
  /** The size stat gave (0 when unknown). */
  size: number,
  plan: ReadPlan,
  buffer: Buffer,
  aborted: () => boolean = () => false,
  /** The file already open (the caller closes it); read from its first byte whatever its offset. */
  opened?: number,
): ReadOutcome {
  const hashers = plan.hashes.map((h) => [h, createHash(HASHES[h].node)] as const);
  const matcher = plan.contents.length ? new LineMatcher(plan.contents, plan.macroal) : undefined;
  let bytes = 0;
  const take = (chunk: Buffer): boolean => {
    if (aborted()) throw new SearchAbortedError();
    bytes += chunk.length;
    for (const [, hash] of hashers) hash.update(chunk);
    if (matcher && !matcher.done) matcher.push(chunk);
    return hashers.length > 0 || (matcher !== undefined && !matcher.done);
  };
  const fd = opened ?? openSync(path, "r");
  try {
    // Positioned reads: a file opened by the caller may be read twice (more hashes to report).
    let n = readSync(fd, buffer, 0, buffer.length, 0);
    if (plan.decompress && n >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) {
      size = fstatSync(fd).size;
      if (size > GZIP_INPUT_MAX)
        throw new Error(`gzip file over ${GZIP_INPUT_MAX / 1048576} MiB, not decompressed`);
      // The whole compressed file in one buffer (no copies), then inflated with a bounded output.
      const compressed = Buffer.allocUnsafe(size);
      buffer.copy(compressed, 0, 0, n);
      let have = n;
      while (have < size) {
        const got = readSync(fd, compressed, have, size - have, have);
        if (got === 0) break;
        have += got;
      }
      let data: Buffer;
      try {
        data = gunzipSync(compressed.subarray(0, have), { maxOutputLength: GZIP_OUTPUT_MAX });
      } catch (err) {
        throw new Error(`not decompressed: ${(err as Error).message}`);
      }
      for (let at = 0; at < data.length; at += CHUNK) if (!take(data.subarray(at, at + CHUNK))) break;
      if (data.length === 0) take(data);
    } else {
      // A short read that reaches the size stat gave is the end: no extra call to be told so.
      // Anything else (FUSE and pseudo files may answer short reads early) reads on to 0.
      let total = 0;
      while (n > 0 && take(buffer.subarray(0, n))) {
        total += n;
        if (n < buffer.length && size > 0 && total >= size) break;
        n = readSync(fd, buffer, 0, buffer.length, total);
      }
    }
  } finally {
    if (opened === undefined) closeSync(fd);
  }
  const digests: Partial<Record<HashName, string>> = {};
  for (const [h, hash] of hashers) digests[h] = hash.digest("hex");
  return { contentHits: matcher ? matcher.end() : [], digests, bytes };
}
