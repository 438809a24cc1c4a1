import { createHash } from "node:crypto";
import { createReadStream, lstatSync, readdirSync, type Stats } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Codes, DragnetError, newId, sha256OfFile } from "../../../common/mod.js";
import {
  type CollectParams,
  type CollectResult,
  EvidenceChunk,
  EvidenceReceipt,
} from "../../../proto/mod.js";
import { absolutePath } from "../check-kit.js";
import { modeString } from "../file/mode-string.js";
import { defineModule, type ModuleContext } from "../registry.js";
import { responseFile } from "../response-file.js";
import { checkCollect, DEFAULT_MAX } from "./check.js";

// `collect`: a file as evidence. The agent hashes it first (the hash the
// coordinator will check), then sends it in chunks, each a request the
// coordinator that sent the command answers once it has written it; the
// first chunk announces the file (size and hash), so that the coordinator
// takes no more than that. The agent hashes again as it reads: a file that
// changed in between is refused rather than sent as something it was not. A
// few chunks travel at once; whatever happens, every one of them is settled
// before the command ends, and a refusal ends it with the coordinator's reason.
// When the coordinator stops answering (it died; with several coordinators,
// another takes its agents' requests over once its lease runs out), the file
// is sent again from its first byte, after a pause, while the action lasts:
// what was half-assembled went with the dead coordinator.

const CHUNK = 256 * 1024;
const WINDOW = 8;
/** How long the first chunks may wait for their answer (a slow link, a window of chunks queued on it). */
const CHUNK_TIMEOUT_MS = 30_000;
/**
 * Once chunks have been answered, a coordinator that says nothing for ten times the slowest answer
 * so far (5 s at least) is taken as gone: a request it took with it to its death is never answered.
 */
const SILENCE_FACTOR = 10;
const MIN_CHUNK_TIMEOUT_MS = 5000;
/**
 * The last chunk's answer comes once the coordinator has checked and stored the whole file (the
 * JetStream object store with several coordinators): the first chunks' wait, plus a second per
 * 10 MB — not the silence timeout, or a large file kept meanwhile would be sent again.
 */
const STORED_BYTES_PER_MS = 10_000;
/** Pauses before each new attempt at a file whose coordinator stopped answering (60 s in all). */
const RESEND_AFTER_MS = [1000, 2000, 4000, 8000, 15_000, 30_000];

type Ask = NonNullable<ModuleContext["ask"]>;

/** Uploads one regular file (already checked), hashed before and while it is sent; what the coordinator kept. */
async function upload(
  f: { path: string; stats: Stats },
  ask: Ask,
  actionId: string,
  signal: AbortSignal,
): Promise<CollectResult> {
  const { sha256 } = await sha256OfFile(f.path, signal);
  const file: CollectResult = {
    path: f.path,
    size: f.stats.size,
    sha256,
    mtimeMs: Math.floor(f.stats.mtimeMs),
    mode: modeString(f.stats),
    uid: f.stats.uid,
    gid: f.stats.gid,
    chunks: 0,
    uploadId: newId(),
    evidenceId: "",
  };
  let slowestMs = 0;
  const send = async (chunk: EvidenceChunk): Promise<EvidenceReceipt> => {
    const started = Date.now();
    const timeoutMs = chunk.last
      ? CHUNK_TIMEOUT_MS + Math.ceil(file.size / STORED_BYTES_PER_MS)
      : slowestMs === 0
        ? CHUNK_TIMEOUT_MS
        : Math.min(CHUNK_TIMEOUT_MS, Math.max(MIN_CHUNK_TIMEOUT_MS, SILENCE_FACTOR * slowestMs));
    const receipt = EvidenceReceipt.decode(
      await ask("evidence", EvidenceChunk.encode(chunk).finish(), timeoutMs),
    );
    slowestMs = Math.max(slowestMs, Date.now() - started);
    if (receipt.problem?.code) {
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `collect: the coordinator refused ${f.path} at byte ${chunk.offset}: ${receipt.problem.message} [${receipt.problem.code}]`,
      );
    }
    return receipt;
  };
  const chunk = (offset: number, data: Buffer, last: boolean): EvidenceChunk => ({
    uploadId: file.uploadId,
    actionId,
    offset,
    data,
    last,
    // The first chunk announces the file; the last one describes what was sent.
    file: offset === 0 || last ? file : undefined,
  });
  const again = createHash("sha256");
  const inFlight: Promise<EvidenceReceipt>[] = [];
  let offset = 0;
  try {
    for await (const data of createReadStream(f.path, { highWaterMark: CHUNK, signal })) {
      const bytes = data as Buffer;
      again.update(bytes);
      const sent = send(chunk(offset, bytes, false));
      // Handled where it is awaited (in order, or in the finally below); not unhandled meanwhile.
      sent.catch(() => undefined);
      inFlight.push(sent);
      offset += bytes.length;
      file.chunks++;
      if (inFlight.length >= WINDOW) await inFlight.shift();
    }
    await Promise.all(inFlight.splice(0));
  } finally {
    // Never leave a chunk's answer unawaited: a refusal of one in flight must not go unhandled.
    await Promise.allSettled(inFlight);
  }
  if (offset !== file.size || again.digest("hex") !== sha256) {
    throw new DragnetError(
      Codes.MODULE_FAILED,
      `collect: ${f.path} changed while it was being collected (${offset} bytes read, ${file.size} expected): not collected`,
    );
  }
  // The last chunk describes the whole: the coordinator checks what it assembled against it.
  const done = await send(chunk(offset, Buffer.alloc(0), true));
  if (done.status !== "verified") {
    throw new DragnetError(
      Codes.MODULE_FAILED,
      `collect: the coordinator kept ${f.path} as ${done.status || "nothing"} (evidence ${done.evidenceId || "none"})`,
    );
  }
  return { ...file, evidenceId: done.evidenceId };
}

/** Uploads one file, from its first byte again whenever the coordinator stops answering (see above). */
async function uploadResending(
  f: { path: string; stats: Stats },
  ask: Ask,
  actionId: string,
  ctx: Pick<ModuleContext, "signal" | "log">,
): Promise<CollectResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await upload(f, ask, actionId, ctx.signal);
    } catch (err) {
      const pause = RESEND_AFTER_MS[attempt];
      if ((err as DragnetError).code !== Codes.UNAVAILABLE || pause === undefined || ctx.signal.aborted)
        throw err;
      ctx.log.warn("collect: the coordinator stopped answering; sending the file again", {
        path: f.path,
        inMs: pause,
        error: err,
      });
      await sleep(pause, undefined, { signal: ctx.signal }).catch(() => {
        throw err;
      });
    }
  }
}

/** How deep a directory collect goes below its root. */
const MAX_DEPTH = 16;

/**
 * The regular files under a directory a collect may take: in name order, each
 * checked as a single collect would be, within the count and total size; the
 * rest are listed with the reason. Symlinks inside are not followed.
 */
function filesUnder(
  root: string,
  p: CollectParams,
  protectedPaths: readonly string[],
  maxBytes: number,
): { take: Array<{ path: string; stats: Stats }>; skipped: string[] } {
  const maxFiles = p.maxFiles ?? 1;
  const name = p.name ? new RegExp(p.name) : undefined;
  const take: Array<{ path: string; stats: Stats }> = [];
  const skipped: string[] = [];
  let total = 0;
  const walk = (dir: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (err) {
      skipped.push(`${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return;
    }
    for (const entry of names) {
      const path = join(dir, entry);
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) {
        if (depth < MAX_DEPTH) walk(path, depth + 1);
        else skipped.push(`${path}: deeper than ${MAX_DEPTH} levels`);
        continue;
      }
      if (!st.isFile()) continue; // links, sockets, devices: not files to collect
      if (name && !name.test(entry)) continue;
      if (take.length >= maxFiles) {
        skipped.push(`${path}: over ${maxFiles} files (max files)`);
        continue;
      }
      if (total + st.size > maxBytes) {
        skipped.push(`${path}: ${st.size} bytes would go over ${maxBytes} in all (max bytes)`);
        continue;
      }
      try {
        take.push(responseFile("collect", path, { followSymlinks: false, protectedPaths }));
        total += st.size;
      } catch (err) {
        skipped.push(`${path}: ${(err as Error).message.replace(/^collect: /, "")}`);
      }
    }
  };
  walk(root, 0);
  return { take, skipped };
}

export const collectModule = defineModule({
  name: "collect",
  check: checkCollect,
  async run(p, ctx) {
    const ask = ctx.ask;
    if (!ask)
      throw new DragnetError(Codes.MODULE_FAILED, "collect: this agent cannot send evidence (no link)");
    const protectedPaths = ctx.protectedPaths ?? [ctx.stateDir];
    const max = p.maxBytes ?? DEFAULT_MAX;
    const actionId = ctx.actionId ?? "";
    const root = absolutePath(p.path);
    if (p.maxFiles !== undefined && root && lstatSync(root, { throwIfNoEntry: false })?.isDirectory()) {
      const { take, skipped } = filesUnder(root, p, protectedPaths, max);
      const files: CollectResult[] = [];
      for (const f of take) files.push(await uploadResending(f, ask, actionId, ctx));
      return { found: files.length > 0, result: { files, skipped } };
    }
    const f = responseFile("collect", p.path, { followSymlinks: p.followSymlinks, protectedPaths });
    if (f.stats.size > max) {
      throw new DragnetError(
        Codes.PARAMS,
        `collect: ${f.path} has ${f.stats.size} bytes, over the ${max}-byte limit (--max-bytes)`,
      );
    }
    return { found: true, result: { files: [await uploadResending(f, ask, actionId, ctx)], skipped: [] } };
  },
});
