import { execFile } from "node:child_process";
import { isIP } from "node:net";
import { Codes, DragnetError } from "../../../common/mod.js";

// ICMP echo through the system's `ping` (iputils): Node opens no raw or ICMP
// sockets, and ping has the capability (or the ping_group_range) to. Its
// output is read line by line: each reply's time, and the summary's counts.

export interface PingOutput {
  transmitted: number;
  received: number;
  /** Each reply's round trip, in the order they came (duplicates left out). */
  rttsMs: number[];
  /** Lines saying the destination cannot be reached (from a router, or the local stack). */
  unreachable: string[];
  /** ping's own min/avg/max, when it printed them. */
  summary?: { min: number; avg: number; max: number };
}

export function parsePingOutput(text: string): PingOutput {
  const out: PingOutput = { transmitted: 0, received: 0, rttsMs: [], unreachable: [] };
  for (const line of text.split("\n")) {
    const reply = /^\d+ bytes from .*icmp_seq=\d+.* time[=<]([\d.]+) ms/.exec(line);
    if (reply && !line.includes("(DUP!)")) out.rttsMs.push(Number(reply[1]));
    const counts = /^(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(line);
    if (counts) [out.transmitted, out.received] = [Number(counts[1]), Number(counts[2])];
    if (/unreachable/i.test(line)) out.unreachable.push(line.trim().slice(0, 200));
    const rtt = /^(?:rtt|round-trip) min\/avg\/max\/\w+ = ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(line);
    if (rtt) out.summary = { min: Number(rtt[1]), avg: Number(rtt[2]), max: Number(rtt[3]) };
  }
  return out;
}

/** `ping -n -c count -W secs` to an IP literal; ping's exit status 1 (no reply) is an answer, not a failure. */
export function icmpEcho(
  address: string,
  count: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<PingOutput & { problem?: string }> {
  // 200 ms apart (ping's floor for everyone): count 10 takes two seconds, not ten.
  const args = ["-n", `-${isIP(address) === 6 ? 6 : 4}`, "-c", String(count), "-i", "0.2"];
  args.push("-W", (timeoutMs / 1000).toFixed(3), "--", address);
  return new Promise((resolve, reject) => {
    execFile(
      "ping",
      args,
      {
        signal,
        // The last probe's wait, the gaps between probes, and a second to start.
        timeout: timeoutMs + count * 200 + 1000,
        env: { PATH: process.env.PATH, LC_ALL: "C" },
      },
      (err, stdout, stderr) => {
        // execFile's error: code is the exit status, or a string (ENOENT) when ping did not start.
        const e = err as { code?: unknown; message: string } | null;
        if (e?.code === "ENOENT")
          return reject(
            new DragnetError(Codes.MODULE_FAILED, "ping: the ping program (iputils-ping) is not installed"),
          );
        if (signal.aborted) return reject(signal.reason);
        const parsed = parsePingOutput(`${stdout}\n${stderr}`);
        // Status 1: sent, nothing came back. Anything else is ping's own trouble, said on stderr.
        const problem =
          e && e.code !== 1 && !parsed.unreachable.length
            ? `ping: ${(stderr.trim().split("\n")[0] || e.message).slice(0, 200)}`
            : undefined;
        resolve({ ...parsed, problem });
      },
    );
  });
}
