import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../common/mod.js";

/** More stops than any team makes in a month; past it the oldest-ending go first. */
const MAX_STOPS = 10_000;

interface Stop {
  untilMs: number;
  atMs: number;
  by: string;
  reason: string;
}

/**
 * The schedules investigators stopped, as this agent heard of them, on disk:
 * their runs are refused from then on. A stop is kept until the schedule's own
 * end (after that its runs are refused anyway). An agent that was offline when
 * the stop went out never hears of it; it runs no more of that schedule only
 * because the coordinator sends none.
 */
export class StoppedSchedules {
  private readonly stops = new Map<string, Stop>();

  constructor(private readonly file: string) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return;
    }
    try {
      const json = JSON.parse(text) as Record<string, Stop>;
      for (const [id, s] of Object.entries(json)) {
        if (typeof s?.untilMs === "number") this.stops.set(id, s);
      }
    } catch {
      // A torn file cannot happen (written atomically); an edited one is started afresh.
    }
  }

  get(scheduleId: string): Stop | undefined {
    return this.stops.get(scheduleId);
  }

  /** Records a stop durably (false when it was known already). */
  add(scheduleId: string, stop: Stop, now: number): boolean {
    if (this.stops.has(scheduleId)) return false;
    for (const [id, s] of this.stops) if (s.untilMs <= now) this.stops.delete(id);
    if (this.stops.size >= MAX_STOPS) {
      const soonest = [...this.stops].sort((a, b) => a[1].untilMs - b[1].untilMs)[0];
      if (soonest) this.stops.delete(soonest[0]);
    }
    this.stops.set(scheduleId, stop);
    writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(this.stops)), 0o600);
    return true;
  }
}
