import { LITERAL_SEARCH_WASM } from "./literal-search.wasm.gen.js";

// The content search's prefilter asks of every chunk of every file whether a
// literal is in it (literal.ts): on a sweep for a phrase that is every byte of
// every file. Buffer.indexOf does it at ~3.6 GB/s on text (its first byte is
// usually a common letter); literal-search.wat does it at memory speed with
// WebAssembly SIMD, on chunks read straight into its memory (no copy). Where
// WebAssembly SIMD is missing, or a chunk lives elsewhere (a gzip file's
// output), Buffer.indexOf answers: the same answer, slower.

/** A literal ready for the scan: its bytes, and the offsets of the two the SIMD filter compares first. */
export interface Literal {
  bytes: Buffer;
  text: string;
  /** The offsets of its rarest byte and of its rarest other byte: fewer false candidates to check. */
  rare: [number, number];
}

/** Bytes from the most to the least common in files on a Linux host (text and binaries), roughly; the rest are rarer. */
const COMMON = Buffer.from("\0 etaoinsrhldcumfp\ngwyb\xff.,_/-=\"'()0123456789vkTSAEICRNOL", "latin1");
const commonness = new Uint8Array(256);
for (let i = 0; i < COMMON.length; i++) commonness[COMMON[i]!] = COMMON.length - i;

export function prepareLiteral(text: string): Literal {
  const bytes = Buffer.from(text, "latin1");
  const order = [...bytes.keys()].sort((a, b) => commonness[bytes[a]!]! - commonness[bytes[b]!]!);
  const first = order[0] ?? 0;
  const second = order.find((i) => bytes[i] !== bytes[first]) ?? order[1] ?? first;
  return { bytes, text, rare: [first, second] };
}

/** The literal's room at the start of each scan memory; longer literals are searched by Buffer.indexOf. */
const LITERAL_ROOM = 4096;
/** The kernel reads up to 31 bytes past a chunk's end. */
const SLACK = 64;
const PAGE = 65536;

interface Scan {
  memory: Buffer;
  find: (hay: number, n: number, lit: number, k: number, p1: number, p2: number) => number;
  /** The literal in the memory's literal room now. */
  literal?: Literal;
}

/** The part of WebAssembly's JS API used here (Node's types leave it to TypeScript's DOM library). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Memory: new (limits: { initial: number; maximum: number }) => { buffer: ArrayBuffer };
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Scan memories by their ArrayBuffer: a chunk that is a view into one is scanned there. */
const scans = new WeakMap<ArrayBufferLike, Scan>();
let compiled: object | null | undefined;

function kernel(): object | null {
  if (compiled === undefined) {
    try {
      compiled = new wasm.Module(Buffer.from(LITERAL_SEARCH_WASM, "base64"));
    } catch {
      compiled = null; // no WebAssembly SIMD on this CPU or runtime
    }
  }
  return compiled;
}

/**
 * A buffer of `size` bytes to read files into (one per search worker,
 * reused): in a scan memory when the kernel runs here, so findLiteral scans
 * what was read where it was read; a plain buffer otherwise.
 */
export function scanBuffer(size: number): Buffer {
  const module = kernel();
  if (!module) return Buffer.allocUnsafeSlow(size);
  const pages = Math.ceil((LITERAL_ROOM + size + SLACK) / PAGE);
  let memory: { buffer: ArrayBuffer };
  let instance: { exports: Record<string, unknown> };
  try {
    memory = new wasm.Memory({ initial: pages, maximum: pages });
    instance = new wasm.Instance(module, { env: { memory } });
  } catch {
    // A WebAssembly memory reserves gigabytes of address space: refused under a low `ulimit -v`.
    return Buffer.allocUnsafeSlow(size);
  }
  scans.set(memory.buffer, {
    memory: Buffer.from(memory.buffer),
    find: instance.exports.find as Scan["find"],
  });
  return Buffer.from(memory.buffer, LITERAL_ROOM, size);
}

/** Where `literal` first occurs in `chunk`, or -1: Buffer.indexOf's answer. */
export function findLiteral(chunk: Buffer, literal: Literal): number {
  const scan = scans.get(chunk.buffer);
  if (
    !scan ||
    literal.bytes.length > LITERAL_ROOM ||
    chunk.byteOffset < LITERAL_ROOM ||
    chunk.byteOffset + chunk.length + SLACK > scan.memory.length
  )
    return chunk.indexOf(literal.bytes);
  if (scan.literal !== literal) {
    literal.bytes.copy(scan.memory, 0);
    scan.literal = literal;
  }
  return scan.find(chunk.byteOffset, chunk.length, 0, literal.bytes.length, literal.rare[0], literal.rare[1]);
}
