import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open } from "node:fs/promises";

// Hashing a file in one read, into every digest asked for (a package's md5
// and the SHA-256 results carry), with a buffer the caller owns: no stream
// objects per file, so tens of thousands of small files cost little more than
// their bytes.

/** Big enough that most packaged files are one read; small enough to keep a few in flight. */
export const HASH_CHUNK = 256 * 1024;

/** The digests of a file's content (lower-case hex, in the order asked) and its size in bytes. */
export async function digestFile(
  path: string,
  algorithms: readonly string[],
  buffer: Buffer,
): Promise<{ digests: string[]; size: number }> {
  // O_NOFOLLOW: callers lstat'ed a regular file; a symlink swapped in since is not followed.
  // O_NONBLOCK: nor does a FIFO swapped in block the read.
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const hashes = algorithms.map((a) => createHash(a));
    let size = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      const chunk = buffer.subarray(0, bytesRead);
      for (const h of hashes) h.update(chunk);
    }
    return { digests: hashes.map((h) => h.digest("hex")), size };
  } finally {
    await fh.close();
  }
}
