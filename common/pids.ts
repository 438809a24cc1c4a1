import { readFileSync } from "node:fs";

/**
 * Whether a process runs: it exists (one we may not signal counts) and is not
 * a zombie — an exited process its parent has not reaped yet is gone for every
 * purpose here (stopping it, waiting for it, saying it runs).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return process.platform !== "linux";
  }
}
