import { constants } from "node:fs";
import { open } from "node:fs/promises";

// Reading the small files inventory modules look at (authorized_keys, unit
// files, crontabs, sudoers, /proc/modules): any of them may be a trap laid by
// whoever holds the host. A FIFO in a file's place would block an open() for
// good (and with it a thread of libuv's pool, four in all), a device would
// never end: the file is opened without blocking and its type checked on the
// open file. procfs files say size 0: they are read to their end, within a cap.

/** Configuration files are kilobytes: past this a file is cut or skipped, never read into memory whole. */
export const MAX_TEXT_BYTES = 1024 * 1024;

export interface SmallFileOptions {
  /** Say nothing when the file (or a directory on its way) is not there. */
  optional?: boolean;
  /** At most this many bytes (default MAX_TEXT_BYTES). */
  maxBytes?: number;
  /** A longer file gives its first maxBytes (default: it is skipped, saying so). */
  truncate?: boolean;
}

/** A small regular file's text, or undefined with the reason in `errors`. */
export async function readSmallText(
  path: string,
  errors: string[],
  options: SmallFileOptions = {},
): Promise<string | undefined> {
  const max = options.maxBytes ?? MAX_TEXT_BYTES;
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(options.optional && (code === "ENOENT" || code === "ENOTDIR")))
      errors.push(`${path}: ${(err as Error).message}`);
    return undefined;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      errors.push(`${path}: not a regular file, not read`);
      return undefined;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    // One byte past the cap tells a file that is too long from one that fits exactly.
    while (total <= max) {
      const chunk = Buffer.alloc(Math.min(64 * 1024, max + 1 - total));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
    }
    const data = Buffer.concat(chunks);
    if (total > max) {
      if (!options.truncate) {
        errors.push(`${path}: over ${max} bytes: not read`);
        return undefined;
      }
      return data.subarray(0, max).toString("utf8");
    }
    return data.toString("utf8");
  } catch (err) {
    errors.push(`${path}: ${(err as Error).message}`);
    return undefined;
  } finally {
    await handle.close();
  }
}
