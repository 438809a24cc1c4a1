import { execFile } from "node:child_process";
import { access } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

// Is the host's clock disciplined by NTP? Asked of whatever keeps it: systemd
// (timedatectl, which knows timesyncd and, through timedated, chrony and ntpd
// too), then chrony (chronyc), then timesyncd's own flag file. Node cannot
// call adjtimex(2), so when none of them says, the answer is "unknown".

const run = promisify(execFile);

export interface NtpState {
  ntp: "synchronized" | "unsynchronized" | "unknown";
  /** What said so; empty when nothing did. */
  by: string;
  /** The time source followed, where the reader names one. */
  source: string;
  /** Readers present that could not answer, one line each. */
  errors: string[];
}

/** `timedatectl show -p NTPSynchronized -p NTP` (name=value lines, in whatever order systemd prints them). */
export function parseTimedatectl(text: string): Omit<NtpState, "errors" | "by"> | undefined {
  const values = new Map(
    text
      .split("\n")
      .map((line) => line.trim().split("=", 2) as [string, string?])
      .filter((kv): kv is [string, string] => kv[1] !== undefined),
  );
  const synced = values.get("NTPSynchronized");
  if (synced !== "yes" && synced !== "no") return undefined;
  return {
    ntp: synced === "yes" ? "synchronized" : "unsynchronized",
    source: values.get("NTP") === "no" ? "none (NTP service off)" : "",
  };
}

/**
 * `chronyc -c tracking`, one CSV line: reference id (hex), reference name or
 * address, stratum, reference time, offsets…, and last the leap status, which
 * reads "Not synchronised" until chronyd has a source.
 */
export function parseChronycTracking(text: string): Omit<NtpState, "errors" | "by"> | undefined {
  const fields = text.trim().split("\n")[0]?.split(",") ?? [];
  if (fields.length < 14 || !/^[0-9A-Fa-f]{8}$/.test(fields[0]!)) return undefined;
  const [refId, refName] = [fields[0]!, fields[1]!];
  const leap = fields.at(-1)!.trim();
  if (leap === "Not synchronised" || refId === "00000000") return { ntp: "unsynchronized", source: "" };
  // 127.127.1.1: chronyd serves its own clock ("local" directive), following nothing.
  return { ntp: "synchronized", source: refId === "7F7F0101" ? "local clock" : refName };
}

async function tool(
  cmd: string,
  args: string[],
  signal?: AbortSignal,
): Promise<{ out?: string; error?: string }> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 5000, signal, env: { ...process.env, LC_ALL: "C" } });
    return { out: stdout };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") return {}; // not installed: nothing to say
    const why = (e.stderr || e.message).trim().split("\n")[0] ?? "";
    return { error: `${cmd}: ${why.slice(0, 200)}` };
  }
}

/**
 * The NTP state of the host whose filesystem is at `root`. The programs
 * describe the running system, so they are asked only when root is "/".
 */
export async function ntpState(options: { root?: string; signal?: AbortSignal } = {}): Promise<NtpState> {
  const root = options.root ?? "/";
  const errors: string[] = [];
  const readers: Array<[string, () => Promise<Omit<NtpState, "errors" | "by"> | undefined>]> = [];
  if (root === "/") {
    readers.push([
      "timedatectl",
      async () => {
        const r = await tool("timedatectl", ["show", "-p", "NTPSynchronized", "-p", "NTP"], options.signal);
        if (r.error) errors.push(r.error);
        return r.out === undefined ? undefined : parseTimedatectl(r.out);
      },
    ]);
    readers.push([
      "chronyc",
      async () => {
        const r = await tool("chronyc", ["-c", "tracking"], options.signal);
        if (r.error) errors.push(r.error);
        return r.out === undefined ? undefined : parseChronycTracking(r.out);
      },
    ]);
  }
  // systemd-timesyncd touches this file once it has synchronised the clock
  // (read directly: timedatectl needs a running systemd to answer).
  readers.push([
    "timesyncd",
    async () =>
      (await access(join(root, "run/systemd/timesync/synchronized")).then(
        () => true,
        () => false,
      ))
        ? { ntp: "synchronized", source: "" }
        : undefined,
  ]);
  for (const [by, read] of readers) {
    const state = await read();
    if (state) return { ...state, by, errors };
  }
  return { ntp: "unknown", by: "", source: "", errors };
}
