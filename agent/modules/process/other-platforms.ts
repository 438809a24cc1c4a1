import type { RawProcess } from "../host/procfs.js";

// Where there is no /proc (macOS, Windows): systeminformation's process list,
// loaded only there. It lacks what only /proc tells (deleted executables,
// socket ownership); the module refuses those filters on such hosts.

export async function otherPlatformProcesses(): Promise<Array<RawProcess & { user: string }>> {
  const si = await import("systeminformation");
  const { list } = await si.processes();
  return list.map((p) => ({
    pid: p.pid,
    ppid: p.parentPid,
    uid: 0xffffffff, // (uid_t)-1: not known here
    user: p.user,
    name: p.name,
    state: p.state,
    cmdline: [p.command, p.params].filter(Boolean).join(" "),
    exe: p.path ? `${p.path}/${p.command}` : "",
    exeDeleted: false,
    startedAtMs: Date.parse(p.started) || 0,
    rssBytes: (p.memRss ?? 0) * 1024,
  }));
}
