import { Codes, DragnetError } from "../../../common/mod.js";
import { type ProcessInfo, ProcessParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";
import { readProcess } from "../host/procfs.js";
import { processModule } from "../process/index.js";
import { defineModule } from "../registry.js";
import { checkKill, SIGNALS } from "./check.js";

// `kill`: end one process by pid — only if it is still the process the
// investigator means. The process is described first exactly as `dragnet
// process --hash-exe` would, checked against the expected name and
// executable hash, and checked again (same start time) just before the
// signal, so a pid that was recycled meanwhile is never killed.

const GONE_WAIT_MS = 2000;

export const killModule = defineModule({
  name: "kill",
  check: checkKill,
  async run(p, ctx) {
    if (p.pid === process.pid) throw new DragnetError(Codes.PARAMS, "kill: that is the agent itself");
    const found = await processModule.run(ProcessParams.fromPartial({ pid: p.pid, hashExe: true }), ctx);
    const before: ProcessInfo | undefined = found.result.processes[0];
    if (!before) throw new DragnetError(Codes.NOT_FOUND, `kill: no process ${p.pid} on this host`);
    const name = optionalRegex("kill: expected name regex", p.expectName);
    if (name && !name.test(before.name)) {
      throw new DragnetError(
        Codes.PARAMS,
        `kill: process ${p.pid} is "${before.name}", which does not match ${JSON.stringify(p.expectName)}: not killed (the pid may have been reused)`,
      );
    }
    if (p.expectExeSha256 && before.exeSha256 !== p.expectExeSha256.toLowerCase()) {
      throw new DragnetError(
        Codes.PARAMS,
        `kill: process ${p.pid} (${before.name}) runs ${before.exe || "an unreadable executable"} with SHA-256 ${before.exeSha256 || "unknown"}, not the expected one: not killed`,
      );
    }
    if (!before.exe && before.ppid === 2)
      throw new DragnetError(Codes.PARAMS, `kill: ${p.pid} is a kernel thread`);
    // The same process still? A pid reused since it was described has another start time.
    const now = readProcess(p.pid);
    if (!now || now.startedAtMs !== before.startedAtMs) {
      throw new DragnetError(
        Codes.NOT_FOUND,
        `kill: process ${p.pid} exited (or its pid was reused) before the signal: not killed`,
      );
    }
    const signal = SIGNALS[(p.signal || "KILL").toUpperCase() as keyof typeof SIGNALS];
    process.kill(p.pid, signal);
    let exited = false;
    for (const deadline = Date.now() + GONE_WAIT_MS; Date.now() < deadline; ) {
      const still = readProcess(p.pid);
      // A zombie has exited: only its parent's wait is left.
      if (!still || still.startedAtMs !== before.startedAtMs || still.state.startsWith("Z")) {
        exited = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return { found: true, result: { process: before, signal, exited } };
  },
});
