import { readdirSync, readFileSync, readlinkSync } from "node:fs";

// Reading Linux's /proc, shared by the process and netstat modules. Reads are
// synchronous: /proc answers from kernel memory, and a blocking read here
// costs a third of a round trip to libuv's thread pool. Callers yield between
// processes so the agent's event loop keeps turning.

/** USER_HZ: the unit of /proc's clock-tick fields, 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;

export const hasProcfs = (() => {
  try {
    readFileSync("/proc/self/stat");
    return true;
  } catch {
    return false;
  }
})();

/** Process ids (thread-group leaders, as ps -e lists them). */
export function listPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 0) pids.push(pid);
  }
  return pids.sort((a, b) => a - b);
}

export interface RawProcess {
  pid: number;
  ppid: number;
  uid: number;
  name: string;
  state: string;
  cmdline: string;
  exe: string;
  exeDeleted: boolean;
  startedAtMs: number;
  rssBytes: number;
}

let bootMs: number | undefined;
/** When the machine booted (btime in /proc/stat), in ms since the epoch. */
function bootTimeMs(): number {
  if (bootMs === undefined) {
    const line = readFileSync("/proc/stat", "latin1")
      .split("\n")
      .find((l) => l.startsWith("btime "));
    bootMs = Number(line?.split(" ")[1] ?? 0) * 1000;
  }
  return bootMs;
}

/** One process from /proc/PID; undefined when it exited meanwhile. */
export function readProcess(pid: number): RawProcess | undefined {
  let status: string;
  let stat: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
    stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  const field = (name: string) => {
    const at = status.startsWith(`${name}:`) ? -1 : status.indexOf(`\n${name}:`);
    if (at < 0 && !status.startsWith(`${name}:`)) return "";
    const end = status.indexOf("\n", at + 1);
    return status.slice(at + name.length + 2, end < 0 ? undefined : end).trim();
  };
  // stat: "pid (comm) state ppid …": comm may hold spaces and parentheses, so fields count from the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const startTicks = Number(rest[19]);
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0+$/, "").replaceAll("\0", " ");
  } catch {
    // exited, or not ours to read
  }
  let exe = "";
  let exeDeleted = false;
  try {
    exe = readlinkSync(`/proc/${pid}/exe`);
    if (exe.endsWith(" (deleted)")) {
      exeDeleted = true;
      exe = exe.slice(0, -" (deleted)".length);
    }
  } catch {
    // kernel threads have none; other users' processes need root
  }
  const name = field("Name");
  return {
    pid,
    ppid: Number(field("PPid")),
    // The effective uid, the one ps shows.
    uid: Number(field("Uid").split(/\s+/)[1] ?? -1),
    name,
    state: rest[0] ?? "",
    // Kernel threads have no command line; ps shows their name in brackets, and so does this.
    cmdline: cmdline || `[${name}]`,
    exe,
    exeDeleted,
    startedAtMs: Math.round(bootTimeMs() + (startTicks * 1000) / CLOCK_TICKS),
    rssBytes: Number(field("VmRSS").split(/\s+/)[0] ?? 0) * 1024,
  };
}

/** A process's name (its comm) alone: one read, for callers that need nothing else. */
export function processName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").replace(/\n$/, "");
  } catch {
    return "";
  }
}

/** uid → user name from /etc/passwd (numeric when unknown). */
export function userNames(): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [name, , uid] = line.split(":");
      if (name && uid !== undefined && /^\d+$/.test(uid) && !names.has(Number(uid)))
        names.set(Number(uid), name);
    }
  } catch {
    // no passwd file: numbers only
  }
  return names;
}

/** Socket inodes each process holds open (from /proc/PID/fd links "socket:[N]"). */
export function socketInodes(pid: number): number[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const inodes: number[] = [];
  for (const fd of fds) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith("socket:[")) inodes.push(Number(link.slice(8, -1)));
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}
