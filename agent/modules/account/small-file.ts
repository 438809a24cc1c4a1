import { open } from "node:fs/promises";

/** Configuration files are kilobytes: past this a file is skipped, not read into memory. */
export const MAX_TEXT_BYTES = 1024 * 1024;

/**
 * A small regular file's text, or undefined with the reason in `errors`
 * (nothing said of a missing file when `optional`). The type is checked on
 * the open file: a FIFO or device in its place would block or never end.
 */
export async function readSmallText(
  path: string,
  errors: string[],
  optional = false,
): Promise<string | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if (!(optional && (err as NodeJS.ErrnoException).code === "ENOENT"))
      errors.push(`${path}: ${(err as Error).message}`);
    return undefined;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      errors.push(`${path}: not a regular file, not read`);
      return undefined;
    }
    if (st.size > MAX_TEXT_BYTES) {
      errors.push(`${path}: ${st.size} bytes, over ${MAX_TEXT_BYTES}: not read`);
      return undefined;
    }
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await handle.read(buf, 0, st.size, 0);
    return buf.subarray(0, bytesRead).toString("utf8");
  } catch (err) {
    errors.push(`${path}: ${(err as Error).message}`);
    return undefined;
  } finally {
    await handle.close();
  }
}
