import { open, readFile } from "node:fs/promises";
import { Codes, DragnetError } from "../../../common/mod.js";
import { type MemoryMatch, type MemoryResult, ProcessParams } from "../../../proto/mod.js";
import { hasProcfs } from "../host/procfs.js";
import { processModule } from "../process/index.js";
import { defineModule } from "../registry.js";
import { maskSecrets } from "../secrets.js";
import { timeSlicer } from "../time-slice.js";
import { checkMemory, memoryBudgets, memoryNeedle } from "./check.js";
import { isDeviceMapping, type Region, readableRegions } from "./regions.js";

// `memory`: search processes' memory for a string, bytes or a regex, reading
// /proc/PID/maps and /proc/PID/mem in bounded chunks. The processes are the
// ones the process module's filters select; the agent never searches itself
// (its memory holds the needle it was sent).

const CHUNK = 1024 * 1024;
/** A regex is tried on NUL-free runs of at most this many bytes (C strings, in practice). */
const RUN_MAX = 16 * 1024;
const CONTEXT = 32;

function printable(buf: Buffer): string {
  let s = "";
  for (const b of buf) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
  return s;
}

export const memoryModule = defineModule({
  name: "memory",
  check: checkMemory,
  async run(params, ctx) {
    const needle = memoryNeedle(params);
    if (!hasProcfs) throw new DragnetError(Codes.PARAMS, "memory search needs Linux's /proc");
    const { maxBytes, maxMatches } = memoryBudgets(params);
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
          if (isDeviceMapping(region.line)) continue;
          let address = region.start;
          let carry = Buffer.alloc(0);
          const report = (data: Buffer, base: number, offset: number, length: number) => {
            if (result.matches.length < maxMatches) {
              result.matches.push(
                match(proc.pid, proc.name, region.line, base + offset, data, offset, length),
              );
            }
          };
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
            // What was left of the previous read goes first, so nothing is cut at the boundary.
            const data = carry.length ? Buffer.concat([carry, buffer.subarray(0, n)]) : buffer.subarray(0, n);
            const base = address - carry.length;
            address += n;
            if (needle.bytes) {
              for (const at of occurrences(needle.bytes, data)) {
                if (at + needle.bytes.length > carry.length) report(data, base, at, needle.bytes.length);
              }
              carry = Buffer.from(data.subarray(Math.max(0, data.length - (needle.bytes.length - 1))));
            } else {
              // Regex matches stay within NUL-free runs (C strings), each tried once when complete.
              const end = address >= region.end ? data.length : data.lastIndexOf(0) + 1;
              await regexRuns(needle.regex!, data.subarray(0, end), ctx.signal, (offset, len) =>
                report(data, base, offset, len),
              );
              carry = Buffer.from(data.subarray(end));
              if (carry.length > RUN_MAX) {
                // A run longer than any tried at once: tried now, in pieces, and not carried further.
                const long = carry;
                await regexRuns(needle.regex!, long, ctx.signal, (offset, len) =>
                  report(long, base + end, offset, len),
                );
                carry = Buffer.alloc(0);
              }
            }
          }
          if (carry.length && needle.regex && !full()) {
            await regexRuns(needle.regex, carry, ctx.signal, (offset, len) =>
              report(carry, address - carry.length, offset, len),
            );
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

/** Offsets of every occurrence of bytes in data. */
function* occurrences(bytes: Buffer, data: Buffer): Generator<number> {
  for (let at = data.indexOf(bytes); at >= 0; at = data.indexOf(bytes, at + 1)) yield at;
}

/**
 * Tries a regex on each NUL-free run of data (at most RUN_MAX bytes; longer
 * ones in RUN_MAX pieces), yielding to the event loop every few milliseconds
 * and stopping when the command is aborted: a costly regex slows the search,
 * never the agent.
 */
async function regexRuns(
  re: RegExp,
  data: Buffer,
  signal: AbortSignal,
  found: (offset: number, length: number) => void,
): Promise<void> {
  const slice = timeSlicer(signal);
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0, start);
    if (end < 0) end = data.length;
    for (let at = start; at < end; at += RUN_MAX) {
      const piece = Math.min(end, at + RUN_MAX);
      const text = data.toString("latin1", at, piece);
      re.lastIndex = 0;
      for (let m = re.exec(text); m; m = re.exec(text)) {
        found(at + m.index, Math.max(1, m[0].length));
        if (m[0].length === 0) re.lastIndex++;
      }
      await slice();
    }
    start = end + 1;
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
    // Where a secret is, never what it is (a NATS seed, a private key): see secrets.ts.
    context: maskSecrets(
      printable(data.subarray(Math.max(0, offset - CONTEXT), offset + Math.min(length, 256) + CONTEXT)),
    ),
  };
}
