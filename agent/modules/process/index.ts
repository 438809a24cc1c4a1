import { statSync } from "node:fs";
import { Codes, DragnetError, sha256OfFile } from "../../../common/mod.js";
import type { ProcessInfo, ProcessParams, ProcessResult } from "../../../proto/mod.js";
import {
  hasProcfs,
  listPids,
  type RawProcess,
  readProcess,
  socketInodes,
  userNames,
} from "../host/procfs.js";
import { listeningInodes } from "../netstat/index.js";
import { defineModule } from "../registry.js";
import { timeSlicer } from "../time-slice.js";
import { type CompiledProcessFilter, checkProcess, compileProcessFilter } from "./check.js";
import { otherPlatformProcesses } from "./other-platforms.js";

// `process`: which processes run, read from /proc on Linux (every field ps
// shows, straight from the kernel), from systeminformation elsewhere.

/** Everything but the hash and the listening test, which cost more and come last. */
function cheapMatch(p: ProcessParams, c: CompiledProcessFilter, proc: RawProcess, user: string): boolean {
  if (p.pid !== undefined && proc.pid !== p.pid) return false;
  if (c.excluded.has(proc.pid)) return false;
  if (p.ppid !== undefined && proc.ppid !== p.ppid) return false;
  if (c.uid !== undefined && proc.uid !== c.uid) return false;
  if (c.userName !== undefined && user !== c.userName) return false;
  if (c.name && !c.name.test(proc.name)) return false;
  if (c.cmdline && !c.cmdline.test(proc.cmdline)) return false;
  if (c.exe && !c.exe.test(proc.exe)) return false;
  if (p.deletedExe && !proc.exeDeleted) return false;
  if (p.startedAfterMs !== undefined && !(proc.startedAtMs > p.startedAfterMs)) return false;
  if (p.startedBeforeMs !== undefined && !(proc.startedAtMs < p.startedBeforeMs)) return false;
  return true;
}

export const processModule = defineModule({
  name: "process",
  check: checkProcess,
  async run(params, ctx) {
    const c = compileProcessFilter(params);
    const result: ProcessResult = { processes: [], scanned: 0, errors: [] };
    if (!hasProcfs) {
      if (params.deletedExe || params.listening) {
        throw new DragnetError(Codes.PARAMS, "--deleted-exe and --listening need Linux's /proc");
      }
      const all = await otherPlatformProcesses();
      result.scanned = all.length;
      result.processes = all
        .filter((proc) => cheapMatch(params, c, proc, proc.user))
        .map((proc) => info(proc, proc.user));
      return { found: result.processes.length > 0, result };
    }
    const users = userNames();
    const listening = params.listening ? listeningInodes(result.errors) : undefined;
    const hashes = new Map<string, string>();
    const slice = timeSlicer(ctx.signal);
    for (const pid of listPids()) {
      await slice();
      const proc = readProcess(pid);
      if (!proc) continue; // exited between the listing and the read
      result.scanned++;
      const user = users.get(proc.uid) ?? String(proc.uid);
      if (!cheapMatch(params, c, proc, user)) continue;
      if (listening && !socketInodes(pid).some((inode) => listening.has(inode))) continue;
      const row = info(proc, user);
      if (params.hashExe || c.sha256.size > 0) {
        // /proc/PID/exe opens the file the process runs, even when its path was deleted or replaced.
        try {
          const st = statSync(`/proc/${pid}/exe`);
          const key = `${st.dev}:${st.ino}:${st.mtimeMs}`;
          let digest = hashes.get(key);
          if (digest === undefined) {
            digest = (await sha256OfFile(`/proc/${pid}/exe`, ctx.signal)).sha256;
            hashes.set(key, digest);
          }
          row.exeSha256 = digest;
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          if (proc.exe)
            result.errors.push(`${pid} ${proc.exe}: ${(err as NodeJS.ErrnoException).code ?? err}`);
        }
        if (c.sha256.size > 0 && !c.sha256.has(row.exeSha256)) continue;
      }
      result.processes.push(row);
    }
    return { found: result.processes.length > 0, result };
  },
});

function info(proc: RawProcess, user: string): ProcessInfo {
  return {
    pid: proc.pid,
    ppid: proc.ppid,
    uid: proc.uid,
    user,
    name: proc.name,
    cmdline: proc.cmdline,
    exe: proc.exe,
    exeSha256: "",
    exeDeleted: proc.exeDeleted,
    startedAtMs: proc.startedAtMs,
    rssBytes: proc.rssBytes,
    state: proc.state,
  };
}
