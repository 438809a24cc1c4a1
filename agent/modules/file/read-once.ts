import { createHash, webcrypto } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { pipeline } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import { createGunzip } from "node:zlib";
import { HASHES, type HashName, type RegexCheck } from "./criteria.js";

// Reading a file once for everything a search asks of its content: the
// content regexes (line by line) and every hash wanted, from the same bytes.

/** Files up to this size are read whole and hashed on the thread pool (both cores). */
const WHOLE_FILE_MAX = 32 * 1024 * 1024;
const CHUNK = 1024 * 1024;
/** A line longer than this is matched in windows of this size… */
export const MAX_LINE = 1024 * 1024;
/** …each overlapping the previous by this much, so a match that short is never cut in two. */
export const LINE_OVERLAP = 4096;

/** Hashes WebCrypto computes off the main thread; the others run on it, chunk by chunk. */
const WEBCRYPTO: Partial<Record<HashName, string>> = {
  sha1: "SHA-1",
  sha256: "SHA-256",
  sha384: "SHA-384",
  sha512: "SHA-512",
};

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
}

/**
 * Content regexes applied line by line over a stream of text. ASCII-only
 * patterns are matched on bytes (latin1, like grep in the C locale); others
 * on UTF-8 text.
 */
export class LineMatcher {
  private carry = "";
  private sawLine = false;
  private readonly states: LineState[];
  private readonly decoder: StringDecoder;

  constructor(checks: RegexCheck[], macroal: boolean) {
    this.states = checks.map((check) => ({
      check,
      scan: new RegExp(check.re.source, [...new Set(`${check.re.flags}gm`)].join("")),
      mode: macroal && !check.invert ? "all" : "any",
      decided: false,
      hit: false,
    }));
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range is the point
    const ascii = checks.every((c) => /^[\x00-\x7f]*$/.test(c.re.source));
    this.decoder = new StringDecoder(ascii ? "latin1" : "utf8");
  }

  get done(): boolean {
    return this.states.every((s) => s.decided);
  }

  push(chunk: Buffer): void {
    const text = this.carry + this.decoder.write(chunk);
    const last = text.lastIndexOf("\n");
    if (last < 0) {
      this.carry = text;
      if (this.carry.length > MAX_LINE) {
        this.lines(this.carry, this.carry.length, true);
        this.carry = this.carry.slice(-LINE_OVERLAP);
      }
      return;
    }
    this.lines(text, last, false);
    this.carry = text.slice(last + 1);
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

  /** Applies the checks to the lines in text[0, end); `whole` when that span is one line (or window). */
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

async function* chunksOf(path: string, decompress: boolean, signal: AbortSignal): AsyncGenerator<Buffer> {
  const fh = await open(path, "r");
  try {
    let gzip = false;
    if (decompress) {
      const head = Buffer.alloc(2);
      const { bytesRead } = await fh.read(head, 0, 2, 0);
      gzip = bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
    }
    const raw = fh.createReadStream({ start: 0, highWaterMark: CHUNK, autoClose: false, signal });
    const source = gzip ? pipeline(raw, createGunzip({ chunkSize: CHUNK }), () => undefined) : raw;
    for await (const chunk of source) yield chunk as Buffer;
  } finally {
    await fh.close();
  }
}

/**
 * Reads `path` once and returns what `plan` asks: content outcomes and
 * digests. Stops early when every content check is decided and no hash is
 * wanted. `size` (from stat) picks the whole-file path for small files.
 */
export async function readOnce(
  path: string,
  size: number,
  plan: ReadPlan,
  signal: AbortSignal,
): Promise<ReadOutcome> {
  if (plan.contents.length === 0 && !plan.decompress && size <= WHOLE_FILE_MAX) {
    const data = await readFile(path, { signal });
    const digests: Partial<Record<HashName, string>> = {};
    await Promise.all(
      plan.hashes.map(async (h) => {
        const web = WEBCRYPTO[h];
        digests[h] = web
          ? Buffer.from(await webcrypto.subtle.digest(web, data)).toString("hex")
          : createHash(HASHES[h].node).update(data).digest("hex");
      }),
    );
    return { contentHits: [], digests, bytes: data.length };
  }
  const hashers = plan.hashes.map((h) => [h, createHash(HASHES[h].node)] as const);
  const matcher = plan.contents.length ? new LineMatcher(plan.contents, plan.macroal) : undefined;
  let bytes = 0;
  for await (const chunk of chunksOf(path, plan.decompress, signal)) {
    bytes += chunk.length;
    for (const [, hash] of hashers) hash.update(chunk);
    if (matcher && !matcher.done) matcher.push(chunk);
    if (hashers.length === 0 && (!matcher || matcher.done)) break;
  }
  const digests: Partial<Record<HashName, string>> = {};
  for (const [h, hash] of hashers) digests[h] = hash.digest("hex");
  return { contentHits: matcher ? matcher.end() : [], digests, bytes };
}
