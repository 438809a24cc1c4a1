import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Codes, DragnetError, newId, sha256OfFile } from "../../../common/mod.js";
import type { CollectResult } from "../../../proto/mod.js";
import { modeString } from "../file/mode-string.js";
import { defineModule } from "../registry.js";
import { responseFile } from "../response-file.js";
import { checkCollect, DEFAULT_MAX } from "./check.js";

// `collect`: a file as evidence. The agent hashes it first (the hash the
// coordinator will check), then sends it in chunks through JetStream, hashing
// again as it reads: a file that changed in between is refused rather than
// sent as something it was not. A few chunks travel at once; each is stored
// by the server before the next window.

const CHUNK = 256 * 1024;
const WINDOW = 8;

export const collectModule = defineModule({
  name: "collect",
  check: checkCollect,
  async run(p, ctx) {
    const send = ctx.sendEvidence;
    if (!send)
      throw new DragnetError(Codes.MODULE_FAILED, "collect: this agent cannot send evidence (no link)");
    const f = responseFile("collect", p.path, {
      followSymlinks: p.followSymlinks,
      protectedPaths: ctx.protectedPaths ?? [ctx.stateDir],
    });
    const max = p.maxBytes ?? DEFAULT_MAX;
    if (f.stats.size > max) {
      throw new DragnetError(
        Codes.PARAMS,
        `collect: ${f.path} has ${f.stats.size} bytes, over the ${max}-byte limit (--max-bytes)`,
      );
    }
    const { sha256 } = await sha256OfFile(f.path, ctx.signal);
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
    };
    const actionId = ctx.actionId ?? "";
    const again = createHash("sha256");
    const inFlight: Promise<void>[] = [];
    let offset = 0;
    for await (const data of createReadStream(f.path, { highWaterMark: CHUNK, signal: ctx.signal })) {
      const bytes = data as Buffer;
      again.update(bytes);
      inFlight.push(
        send({ uploadId: file.uploadId, actionId, offset, data: bytes, last: false, file: undefined }),
      );
      offset += bytes.length;
      file.chunks++;
      if (inFlight.length >= WINDOW) await inFlight.shift();
    }
    await Promise.all(inFlight);
    if (offset !== file.size || again.digest("hex") !== sha256) {
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `collect: ${f.path} changed while it was being collected (${offset} bytes read, ${file.size} expected): not collected`,
      );
    }
    // The last chunk describes the whole: the coordinator checks what it assembled against it.
    await send({ uploadId: file.uploadId, actionId, offset, data: Buffer.alloc(0), last: true, file });
    return { found: true, result: file };
  },
});
