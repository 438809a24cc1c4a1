import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { entry, listDir, type RawEntry, type Root, readText } from "./entry.js";

// cron's tables and at's queue: the system crontab and /etc/cron.d (with a
// user field), the run-parts directories, users' crontabs (Debian's
// /var/spool/cron/crontabs, cronie's /var/spool/cron), and pending at jobs.

const MAX_COMMAND = 512;
const ENV_LINE = /^[A-Za-z_][A-Za-z0-9_]*\s*=/;
/** run-parts (and cron for /etc/cron.d) skip files whose names have other characters (dpkg's *.dpkg-old…). */
const RUN_PARTS_NAME = /^[A-Za-z0-9_-]+$/;

export const clip = (text: string) =>
  text.length > MAX_COMMAND ? `${text.slice(0, MAX_COMMAND - 1)}…` : text;

/** The jobs of a crontab: one entry each (schedule, user, command); environment lines and comments skipped. */
export function parseCrontab(
  text: string,
  withUser: boolean,
): { schedule: string; user: string; command: string }[] {
  const jobs: { schedule: string; user: string; command: string }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || ENV_LINE.test(line)) continue;
    const fields = line.split(/\s+/);
    const n = fields[0]!.startsWith("@") ? 1 : 5;
    if (fields.length < n + (withUser ? 2 : 1)) continue;
    jobs.push({
      schedule: fields.slice(0, n).join(" "),
      user: withUser ? fields[n]! : "",
      command: line
        .split(/\s+/)
        .slice(n + (withUser ? 1 : 0))
        .join(" "),
    });
  }
  return jobs;
}

export async function cronEntries(root: Root, errors: string[]): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  const table = async (path: string, withUser: boolean, user = "", flags: string[] = []) => {
    const text = await readText(path, errors);
    if (text === undefined) return;
    for (const job of parseCrontab(text, withUser))
      out.push(
        entry("cron", path, {
          name: path.slice(path.lastIndexOf("/") + 1),
          schedule: job.schedule,
          user: job.user || user,
          command: clip(job.command),
          flags: [...flags],
        }),
      );
  };
  await table(root.at("/etc/crontab"), true);
  const crond = root.at("/etc/cron.d");
  for (const name of await listDir(crond, errors))
    await table(join(crond, name), true, "", RUN_PARTS_NAME.test(name) ? [] : ["ignored-name"]);
  for (const period of ["hourly", "daily", "weekly", "monthly"]) {
    const dir = root.at(`/etc/cron.${period}`);
    for (const name of await listDir(dir, errors)) {
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st || st.isDirectory()) continue;
      const flags = RUN_PARTS_NAME.test(name) ? [] : ["ignored-name"];
      if ((Number(st.mode) & 0o111) === 0 && !st.isSymbolicLink()) flags.push("not-executable");
      out.push(entry("cron", path, { name, schedule: `@${period}`, user: "root", command: path, flags }));
    }
  }
  for (const spool of ["/var/spool/cron/crontabs", "/var/spool/cron"]) {
    const dir = root.at(spool);
    for (const name of await listDir(dir, errors)) {
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (st?.isFile()) await table(path, false, name);
    }
  }
  return out;
}

/** Pending at jobs: a0000101a3f2c1 is queue "a", job 0x00001, due 0x01a3f2c1 minutes after the epoch. */
export async function atEntries(
  root: Root,
  errors: string[],
  userOf: (uid: number) => string,
): Promise<RawEntry[]> {
  const out: RawEntry[] = [];
  for (const spool of ["/var/spool/cron/atjobs", "/var/spool/at"]) {
    const dir = root.at(spool);
    for (const name of await listDir(dir, errors)) {
      const m = /^([a-zA-Z=])([0-9a-f]{5})([0-9a-f]{8})$/.exec(name);
      if (!m) continue;
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (!st?.isFile()) continue;
      const text = (await readText(path, errors)) ?? "";
      // at wraps the user's commands in a here-document after its environment set-up.
      const body = /<< '(marcinDELIMITER[0-9a-f]+)'\n([\s\S]*?)\n\1/.exec(text)?.[2];
      const command =
        body ??
        text
          .split("\n")
          .filter((l) => l.trim() && !l.startsWith("#"))
          .at(-1) ??
        "";
      out.push(
        entry("at", path, {
          name: `${m[1]}${Number.parseInt(m[2]!, 16)}`,
          schedule: new Date(Number.parseInt(m[3]!, 16) * 60_000).toISOString(),
          user: userOf(Number(st.uid)),
          command: clip(command.trim().replace(/\n/g, "; ")),
          state: m[1] === "=" ? "running" : "queued",
        }),
      );
    }
  }
  return out;
}
