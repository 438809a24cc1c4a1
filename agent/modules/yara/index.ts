import type { Dirent } from "node:fs";
import { lstat, open, readdir, readFile, realpath } from "node:fs/promises";
import { basename, join } from "node:path";
import { Codes, DragnetError } from "../../../common/mod.js";
import { ProcessParams, type YaraMatch, type YaraParams, type YaraResult } from "../../../proto/mod.js";
import { absolutePath, optionalRegex } from "../check-kit.js";
import { hasProcfs } from "../host/procfs.js";
import { isDeviceMapping, type Region, readableRegions } from "../memory/regions.js";
import { processModule } from "../process/index.js";
import { defineModule, type ModuleContext } from "../registry.js";
import { maskSecrets } from "../secrets.js";
import { checkYara, describeCompileError, rulesSha256, yaraBudgets } from "./check.js";
import { type YaraRuleMatch, type YaraScanner, yaraAddon, yaraEngine } from "./engine.js";
import { YaraWorkers } from "./workers.js";

// `yara`: scan files, or processes' memory, with the YARA rules the signed
// action carries, compiled here again by YARA-X. Files are walked as `yara
// -r -N` walks them: regular files under each root, symlinks not followed,
// /proc, /sys and /dev never entered; files over the size cap are counted,
// not read. Memory is read region by region through /proc/PID/mem, as the
// memory module reads it; the agent never scans itself (it holds the rules).
// Files are scanned by worker threads (workers.ts), memory on libuv's threads:
// the agent's event loop keeps beating.

const NEVER = ["/proc", "/sys", "/dev"];
/** Memory is scanned in pieces of at most this size (a region may be larger). */
const MEMORY_CHUNK = 16 * 1024 * 1024;
const STRING_DATA = 64;

const under = (path: string, root: string) => path === root || path.startsWith(`${root}/`);

function printable(text: string): string {
  let s = "";
  for (const ch of text.slice(0, STRING_DATA)) {
    const c = ch.charCodeAt(0);
    s += c >= 0x20 && c < 0x7f ? ch : ".";
  }
  return s;
}

/** A rule's match as the result carries it: strings capped, meta as text, secrets masked. */
function matchOf(m: YaraRuleMatch, where: Partial<YaraMatch>, maxStrings: number): YaraMatch {
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.meta ?? {})) meta[k] = String(v).slice(0, 512);
  return {
    path: "",
    pid: 0,
    process: "",
    exe: "",
    ...where,
    rule: m.ruleIdentifier,
    namespace: m.namespace,
    tags: m.tags,
    meta,
    strings: m.matches.slice(0, maxStrings).map((s) => ({
      identifier: s.identifier,
      offset: s.offset,
      length: s.length,
      data: maskSecrets(printable(s.data)),
    })),
    stringsOmitted: Math.max(0, m.matches.length - maxStrings),
  };
}

/** One source of every rule file, in order (as yara takes several files into one namespace). */
const sourceOf = (p: YaraParams) => p.rules.map((r) => r.text).join("\n");

/** Each signed rule file checked by the compiler: refused with its own message, file and line. */
async function checkRules(p: YaraParams, ctx: ModuleContext): Promise<void> {
  const engine = await yaraEngine(ctx.stateDir);
  for (const r of p.rules) {
    const { errors } = engine.validate(r.text);
    if (errors.length)
      throw new DragnetError(Codes.PARAMS, `yara: ${describeCompileError(r.name, errors[0]!)}`);
  }
}

/** The rules compiled together (they may still clash: two rules of one name in two files). */
async function compiled<T>(make: () => T | Promise<T>): Promise<T> {
  try {
    return await make();
  } catch (err) {
    throw new DragnetError(
      Codes.PARAMS,
      `yara: the rules do not compile together: ${(err as Error).message}`,
    );
  }
}

async function scanFiles(p: YaraParams, workers: YaraWorkers, result: YaraResult, ctx: ModuleContext) {
  const b = yaraBudgets(p);
  const name = optionalRegex("yara: file name regex", p.name);
  const full = () => result.matches.length >= b.maxMatches;
  const scan = async (path: string) => {
    if (name && !name.test(basename(path))) return;
    const scanned = await workers.scan(path);
    if (scanned.error !== undefined) {
      if (result.errors.length < 20) result.errors.push(`${path}: ${scanned.error}`);
      return;
    }
    if (scanned.overCap) result.filesOverCap++;
    if (!scanned.matches) return;
    result.filesScanned++;
    result.bytesScanned += scanned.size ?? 0;
    for (const m of scanned.matches) {
      if (full()) {
        result.truncated = true;
        return;
      }
      result.matches.push(matchOf(m, { path }, b.maxStrings));
    }
  };
  // The walk hands files to the workers and waits when they fall behind.
  const inFlight = new Set<Promise<void>>();
  const submit = async (task: () => Promise<void>) => {
    while (workers.backlog >= 256) await Promise.race(inFlight);
    const done: Promise<void> = task().finally(() => inFlight.delete(done));
    inFlight.add(done);
  };
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (result.errors.length < 20) result.errors.push(`${dir}: ${(err as NodeJS.ErrnoException).code}`);
      return;
    }
    for (const entry of entries) {
      if (ctx.signal.aborted || full()) break;
      const path = join(dir, entry.name);
      if (NEVER.some((n) => under(path, n))) continue;
      if (entry.isDirectory()) {
        if (depth < b.maxDepth) await walk(path, depth + 1);
      } else if (entry.isFile()) await submit(() => scan(path));
    }
  };
  for (const root of p.paths.map((r) => absolutePath(r)!)) {
    if (ctx.signal.aborted || full()) break;
    // Where the root really is decides whether it may be read (a link into /proc is /proc).
    const real = await realpath(root).catch(() => undefined);
    if (!real) {
      result.errors.push(`${root}: does not exist`);
      continue;
    }
    if (NEVER.some((n) => under(real, n))) {
      result.errors.push(`${root}: /proc, /sys and /dev are never read`);
      continue;
    }
    const st = await lstat(real);
    if (st.isDirectory()) await walk(real, 1);
    else if (st.isFile()) await submit(() => scan(root));
  }
  await Promise.all(inFlight);
  if (full()) result.truncated = true;
}

async function scanMemory(p: YaraParams, scanner: YaraScanner, result: YaraResult, ctx: ModuleContext) {
  if (!hasProcfs) throw new DragnetError(Codes.PARAMS, "yara: scanning memory needs Linux's /proc");
  const b = yaraBudgets(p);
  const selected = await processModule.run(p.processes ?? ProcessParams.fromPartial({}), ctx);
  result.errors.push(...selected.result.errors);
  const buffer = Buffer.allocUnsafe(MEMORY_CHUNK);
  const full = () => result.matches.length >= b.maxMatches || result.bytesScanned >= b.maxBytes;
  for (const proc of selected.result.processes) {
    if (proc.pid === process.pid) continue;
    if (ctx.signal.aborted || full()) break;
    let fh: Awaited<ReturnType<typeof open>>;
    let regions: Region[];
    try {
      regions = readableRegions(await readFile(`/proc/${proc.pid}/maps`, "latin1")).filter(
        (r) => !isDeviceMapping(r.line),
      );
      fh = await open(`/proc/${proc.pid}/mem`, "r");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ESRCH") result.errors.push(`${proc.pid} ${proc.name}: ${code}`);
      continue;
    }
    result.processesScanned++;
    // A rule counts once per process, with the strings of the first pieces it matched in.
    const matched = new Map<string, YaraMatch>();
    try {
      for (const region of regions) {
        for (let address = region.start; address < region.end && !full(); address += MEMORY_CHUNK) {
          if (ctx.signal.aborted) break;
          const length = Math.min(MEMORY_CHUNK, region.end - address, b.maxBytes - result.bytesScanned);
          let n: number;
          try {
            ({ bytesRead: n } = await fh.read(buffer, 0, length, address));
          } catch {
            break;
          }
          if (n === 0) break;
          result.bytesScanned += n;
          for (const m of await scanner.scanAsync(buffer.subarray(0, n))) {
            const key = `${m.namespace}:${m.ruleIdentifier}`;
            const seen = matched.get(key);
            const found = matchOf(
              { ...m, matches: m.matches.map((s) => ({ ...s, offset: s.offset + address })) },
              { path: proc.exe || proc.name, pid: proc.pid, process: proc.name, exe: proc.exe },
              b.maxStrings,
            );
            if (!seen) matched.set(key, found);
            else {
              const room = Math.max(0, b.maxStrings - seen.strings.length);
              seen.strings.push(...found.strings.slice(0, room));
              seen.stringsOmitted += found.stringsOmitted + Math.max(0, found.strings.length - room);
            }
          }
        }
      }
    } finally {
      await fh.close();
    }
    for (const m of matched.values()) {
      if (result.matches.length >= b.maxMatches) {
        result.truncated = true;
        break;
      }
      result.matches.push(m);
    }
  }
  if (full()) result.truncated = true;
}

export const yaraModule = defineModule({
  name: "yara",
  check: checkYara,
  async run(p, ctx) {
    await checkRules(p, ctx);
    const result: YaraResult = {
      matches: [],
      filesScanned: 0,
      bytesScanned: 0,
      processesScanned: 0,
      filesOverCap: 0,
      errors: [],
      truncated: false,
      rulesSha256: rulesSha256(p.rules),
    };
    if (p.processes) {
      const engine = await yaraEngine(ctx.stateDir);
      await scanMemory(p, await compiled(() => engine.compile(sourceOf(p))), result, ctx);
    } else {
      // Compiled by each worker thread, not here as well.
      const addon = await yaraAddon(ctx.stateDir);
      const workers = await compiled(() =>
        YaraWorkers.start(addon, sourceOf(p), yaraBudgets(p).maxFileBytes),
      );
      const stop = () => void workers.stop();
      ctx.signal.addEventListener("abort", stop, { once: true });
      try {
        await scanFiles(p, workers, result, ctx);
      } finally {
        ctx.signal.removeEventListener("abort", stop);
        await workers.stop();
      }
    }
    if (ctx.signal.aborted) {
      // Stopped at the action's timeout: what was found so far, and that it is not everything.
      result.truncated = true;
      result.errors.push(
        `stopped at the timeout after ${result.filesScanned || result.processesScanned} ${p.processes ? "processes" : "files"}`,
      );
    }
    return { found: result.matches.length > 0, result };
  },
});
