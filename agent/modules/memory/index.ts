import { open, readFile } from "node:fs/promises";
import { Codes, DragnetError } from "../../../common/mod.js";
import { type MemoryMatch, type MemoryResult, ProcessParams } from "../../../proto/mod.js";
import { hasProcfs } from "../host/procfs.js";
import { processModule } from "../process/index.js";
import { defineModule } from "../registry.js";

// `memory`: search processes' memory for a string, bytes or a regex, reading
// /proc/PID/maps and /proc/PID/mem in bounded chunks. The processes are the
// ones the process module's filters select; the agent never searches itself
// (its memory holds the needle it was sent).

const CHUNK = 1024 * 1024;
/** A regex match that crosses a chunk boundary is found if it is shorter than this. */
const REGEX_OVERLAP = 4096;
const DEFAULT_MAX_BYTES = 1024 ** 3;
const DEFAULT_MAX_MATCHES = 100;
const CONTEXT = 32;

interface Needle {
  bytes?: Buffer;
  regex?: RegExp;
}

function needleOf(p: { string: string; hex: string; regex: string }): Needle {
  const given = [p.string, p.hex, p.regex].filter((v) => v !== "").length;
  if (given !== 1)
    throw new DragnetError(Codes.PARAMS, "memory search takes exactly one of a string, hex bytes or a regex");
  if (p.string) {
    if (p.string.length > 4096)
      throw new DragnetError(Codes.PARAMS, "memory search string is longer than 4096");
    return { bytes: Buffer.from(p.string, "utf8") };
  }
  if (p.hex) {
    const hex = p.hex.replace(/\s+/g, "");
    if (!/^([0-9a-fA-F]{2}){1,4096}$/.test(hex)) {
      throw new DragnetError(
        Codes.PARAMS,
        `memory search hex "${p.hex.slice(0, 80)}" is not an even number of hex digits`,
      );
    }
    return { bytes: Buffer.from(hex, "hex") };
  }
  if (p.regex.length > 4096) throw new DragnetError(Codes.PARAMS, "memory search regex is longer than 4096");
  try {
    return { regex: new RegExp(p.regex, "g") };
  } catch (err) {
    throw new DragnetError(
      Codes.PARAMS,
      `memory search regex ${JSON.stringify(p.regex)}: ${(err as Error).message}`,
    );
  }
}

function printable(buf: Buffer): string {
  let s = "";
  for (const b of buf) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
  return s;
}

interface Region {
  start: number;
  end: number;
  line: string;
}

/** Readable mappings; [vsyscall] and [vvar] cannot be read through /proc/PID/mem. */
function readableRegions(maps: string): Region[] {
  const regions: Region[] = [];
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (r)\S* /.exec(line);
    if (!m || /\[(vsyscall|vvar|vvar_vclock)\]$/.test(line)) continue;
    const start = Number.parseInt(m[1]!, 16);
    const end = Number.parseInt(m[2]!, 16);
    if (Number.isSafeInteger(end)) regions.push({ start, end, line: line.replace(/\s+/g, " ").trim() });
  }
  return regions;
}

export const memoryModule = defineModule({
  name: "memory",
  kind: "investigation",
  summary: "search processes' memory for a string, bytes or a regex",
  check(params) {
    needleOf(params);
    processModule.check(params.processes ?? ProcessParams.fromPartial({}));
  },
  async run(params, ctx) {
    const needle = needleOf(params);
    if (!hasProcfs) throw new DragnetError(Codes.PARAMS, "memory search needs Linux's /proc");
    const maxBytes = params.maxBytes ?? DEFAULT_MAX_BYTES;
    const maxMatches = params.maxMatches ?? DEFAULT_MAX_MATCHES;
    const selected = await processModule.run(params.processes ?? ProcessParams.fromPartial({}), ctx);
    const result: MemoryResult = {
      matches: [],
      bytesRead: 0,
      processesSearched: 0,
      regionsSkipped: 0,
      errors: [...selected.result.errors],
      truncated: false,
    };
    const buffer = Buffer.allocUnsafe(CHUNK);
    const overlap = needle.bytes ? needle.bytes.length - 1 : REGEX_OVERLAP;
    const full = () => result.matches.length >= maxMatches || result.bytesRead >= maxBytes;
    for (const proc of selected.result.processes) {
      if (proc.pid === process.pid) continue;
      if (full()) {
        result.truncated = true;
        break;
      }
      let regions: Region[];
      let fh: Awaited<ReturnType<typeof open>>;
      try {
        regions = readableRegions(await readFile(`/proc/${proc.pid}/maps`, "latin1"));
        fh = await open(`/proc/${proc.pid}/mem`, "r");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ESRCH") continue; // exited
        result.errors.push(
          `${proc.pid} ${proc.name}: ${code === "EACCES" || code === "EPERM" ? "not permitted (another user's process needs root)" : code}`,
        );
        continue;
      }
      result.processesSearched++;
      try {
        for (const region of regions) {
          let address = region.start;
          let carry = Buffer.alloc(0);
          while (address < region.end && !full()) {
            if (ctx.signal.aborted) throw ctx.signal.reason;
            const length = Math.min(CHUNK, region.end - address, maxBytes - result.bytesRead);
            let n: number;
            try {
              ({ bytesRead: n } = await fh.read(buffer, 0, length, address));
            } catch {
              result.regionsSkipped++;
              break;
            }
            if (n === 0) break;
            result.bytesRead += n;
            // The tail of the previous chunk goes first, so a needle across the boundary is found.
            const data = carry.length ? Buffer.concat([carry, buffer.subarray(0, n)]) : buffer.subarray(0, n);
            const base = address - carry.length;
            for (const [offset, length] of find(needle, data)) {
              if (offset + length <= carry.length) continue; // wholly in the previous chunk: reported then
              result.matches.push(
                match(proc.pid, proc.name, region.line, base + offset, data, offset, length),
              );
              if (result.matches.length >= maxMatches) break;
            }
            carry = Buffer.from(data.subarray(Math.max(0, data.length - overlap)));
            address += n;
          }
        }
      } finally {
        await fh.close();
      }
    }
    if (full() && !result.truncated)
      result.truncated = result.matches.length >= maxMatches || result.bytesRead >= maxBytes;
    return { found: result.matches.length > 0, result };
  },
});

/** Where the needle occurs in data: offset and length of each match. */
function* find(needle: Needle, data: Buffer): Generator<[number, number]> {
  if (needle.bytes) {
    const len = needle.bytes.length;
    for (let at = data.indexOf(needle.bytes); at >= 0; at = data.indexOf(needle.bytes, at + 1))
      yield [at, len];
    return;
  }
  const text = data.toString("latin1");
  const re = needle.regex!;
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    yield [m.index, Math.max(1, m[0].length)];
    if (m[0].length === 0) re.lastIndex++;
  }
}

function match(
  pid: number,
  name: string,
  region: string,
  address: number,
  data: Buffer,
  offset: number,
  length: number,
): MemoryMatch {
  return {
    pid,
    process: name,
    region,
    address,
    context: printable(
      data.subarray(Math.max(0, offset - CONTEXT), offset + Math.min(length, 256) + CONTEXT),
    ),
  };
}
