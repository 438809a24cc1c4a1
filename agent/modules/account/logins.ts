import { open } from "node:fs/promises";
import type { Login } from "../../../proto/mod.js";
import { timeSlicer } from "../time-slice.js";

// Logins from wtmp and lastlog, read as glibc lays them out on Linux x86_64
// (and every 64-bit Linux with 32-bit time compatibility): struct utmp is 384
// bytes, struct lastlog 292. wtmp is read from its end, newest first, and
// each login is paired with its logout the way util-linux's last(1) pairs
// them, so that `last -F` and Dragnet tell the same story.

export const UTMP_SIZE = 384;
export const LASTLOG_SIZE = 292;

const RUN_LVL = 1;
const BOOT_TIME = 2;
const NEW_TIME = 3;
const OLD_TIME = 4;
const USER_PROCESS = 7;
const DEAD_PROCESS = 8;
/** Not a glibc type: how last marks "shutdown" records. */
const SHUTDOWN_TIME = 254;

/** wtmp is read this many records at a time, from the end. */
const CHUNK_RECORDS = 2048;

/** A char[] field of a record: up to its first NUL. */
function text(buf: Buffer, at: number, size: number): string {
  const field = buf.subarray(at, at + size);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? size : nul).toString("utf8");
}

export interface UtmpRecord {
  type: number;
  pid: number;
  line: string;
  user: string;
  host: string;
  sec: number;
  usec: number;
}

/** One struct utmp: type@0 (short), pid@4, line@8[32], id@40[4], user@44[32], host@76[256], exit@332, session@336, tv@340 (two int32), addr_v6@348[16]. */
export function parseUtmp(buf: Buffer, at: number): UtmpRecord {
  return {
    type: buf.readInt16LE(at),
    pid: buf.readInt32LE(at + 4),
    line: text(buf, at + 8, 32),
    user: text(buf, at + 44, 32),
    host: text(buf, at + 76, 256),
    sec: buf.readInt32LE(at + 340),
    usec: buf.readInt32LE(at + 344),
  };
}

/** The type last(1) gives a record: old programs leave ut_type wrong, and "~" lines name boots and shutdowns. */
function typeAsLastSees(r: UtmpRecord): number {
  if (r.line.startsWith("~")) {
    if (r.user.startsWith("shutdown")) return SHUTDOWN_TIME;
    if (r.user.startsWith("reboot")) return BOOT_TIME;
    if (r.user.startsWith("runlevel")) return RUN_LVL;
    return r.type;
  }
  let type = r.type;
  if (type !== DEAD_PROCESS && r.user && r.line && !r.user.startsWith("LOGIN")) type = USER_PROCESS;
  if (!r.user) type = DEAD_PROCESS;
  if (r.user.startsWith("date") && r.line.startsWith("|")) type = OLD_TIME;
  if (r.user.startsWith("date") && r.line.startsWith("{")) type = NEW_TIME;
  return type;
}

export interface WtmpOptions {
  /** At most this many logins and boots, newest first; the rest are counted. */
  max: number;
  /** Which records to give (a user filter); the others are neither given nor counted. */
  wanted?: (login: Login) => boolean;
  signal: AbortSignal;
}

export async function readWtmp(
  path: string,
  { max, wanted = () => true, signal }: WtmpOptions,
): Promise<{ logins: Login[]; leftOut: number; errors: string[] }> {
  const out = { logins: [] as Login[], leftOut: 0, errors: [] as string[] };
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      out.errors.push(`${path}: ${(err as Error).message}`);
    return out;
  }
  const slice = timeSlicer(signal);
  const ms = (r: UtmpRecord) => r.sec * 1000 + Math.floor(r.usec / 1000);
  const give = (login: Login) => {
    if (!wanted(login)) return;
    if (out.logins.length < max) out.logins.push(login);
    else out.leftOut++;
  };
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      out.errors.push(`${path}: not a regular file, not read`);
      return out;
    }
    const count = Math.floor(st.size / UTMP_SIZE);
    if (st.size % UTMP_SIZE)
      out.errors.push(`${path}: ${st.size % UTMP_SIZE} bytes past the last whole record`);
    // last(1)'s state, reading backwards: the time of the nearest later record on each line
    // (a login's logout), of the nearest later boot or shutdown, and of the nearest later shutdown.
    const nextOnLine = new Map<string, number>();
    let lastBoot = 0;
    let whyDown = "";
    let lastDown = 0; // 0: none later (a boot "still running")
    const buf = Buffer.alloc(CHUNK_RECORDS * UTMP_SIZE);
    for (let end = count; end > 0; ) {
      const start = Math.max(0, end - CHUNK_RECORDS);
      const { bytesRead } = await handle.read(buf, 0, (end - start) * UTMP_SIZE, start * UTMP_SIZE);
      for (let i = Math.floor(bytesRead / UTMP_SIZE) - 1; i >= 0; i--) {
        const r = parseUtmp(buf, i * UTMP_SIZE);
        const type = typeAsLastSees(r);
        const t = ms(r);
        let down = false;
        if (type === SHUTDOWN_TIME) {
          lastDown = t;
          down = true;
        } else if (type === BOOT_TIME) {
          give({
            user: r.user,
            line: "system boot",
            host: r.host,
            loginMs: t,
            logoutMs: lastDown,
            type: "reboot",
            end: lastDown ? "down" : "open",
          });
          down = true;
        } else if (type === RUN_LVL) {
          // Run level 0 (halt) or 6 (reboot) is a shutdown.
          const level = String.fromCharCode(r.pid & 255);
          if (level === "0" || level === "6") {
            lastDown = t;
            down = true;
          }
        } else if (type === USER_PROCESS || type === DEAD_PROCESS) {
          if (type === USER_PROCESS) {
            const logout = nextOnLine.get(r.line);
            give({
              user: r.user,
              line: r.line,
              host: r.host,
              loginMs: t,
              logoutMs: logout ?? lastBoot,
              type: "user",
              end: logout !== undefined ? "logout" : lastBoot ? whyDown : "open",
            });
          }
          if (r.line) nextOnLine.set(r.line, t);
        }
        if (down) {
          lastBoot = t;
          whyDown = type === SHUTDOWN_TIME || type === RUN_LVL ? "down" : "crash";
          nextOnLine.clear();
        }
      }
      end = start;
      await slice();
    }
  } catch (err) {
    out.errors.push(`${path}: ${(err as Error).message}`);
  } finally {
    await handle.close();
  }
  return out;
}

export interface LastLogin {
  ms: number;
  line: string;
  host: string;
}

/** Each uid's last login from lastlog (records indexed by uid: int32 time, line[32], host[256]); absent when never. */
export async function readLastlog(
  path: string,
  uids: readonly number[],
  errors: string[],
): Promise<Map<number, LastLogin>> {
  const out = new Map<number, LastLogin>();
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") errors.push(`${path}: ${(err as Error).message}`);
    return out;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      errors.push(`${path}: not a regular file, not read`);
      return out;
    }
    const buf = Buffer.alloc(LASTLOG_SIZE);
    // The file is sparse (nobody's uid 65534 puts its record 19 MB in): only each user's record is read.
    for (const uid of new Set(uids)) {
      const at = uid * LASTLOG_SIZE;
      if (at + LASTLOG_SIZE > st.size) continue;
      await handle.read(buf, 0, LASTLOG_SIZE, at);
      const sec = buf.readInt32LE(0);
      if (sec > 0) out.set(uid, { ms: sec * 1000, line: text(buf, 4, 32), host: text(buf, 36, 256) });
    }
  } catch (err) {
    errors.push(`${path}: ${(err as Error).message}`);
  } finally {
    await handle.close();
  }
  return out;
}
