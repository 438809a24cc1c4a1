import { readFileSync } from "node:fs";
import { writeFileAtomic } from "../common/mod.js";

/** More schedules than any team keeps in a month; past it the soonest-ending are forgotten first. */
const MAX_ENTRIES = 10_000;

export interface ScheduleStop {
  /** Kept until then: the schedule's end (its runs are refused by their windows after it). */
  untilMs: number;
  atMs: number;
  by: string;
  reason: string;
}

interface RunStart {
  run: number;
  atMs: number;
  untilMs: number;
}

interface LedgerFile {
  stops: Record<string, ScheduleStop>;
  started: Record<string, RunStart>;
}

/**
 * What this agent knows of schedules, on disk (`schedules.json`): the ones an
 * investigator stopped (their runs are refused from then on) and, per
 * schedule, the last run it started and when, so that runs only go forward
 * and start at least half an interval apart — a coordinator cannot bunch two
 * runs at a window's edge. Entries are kept until the schedule's end.
 *
 * An agent that was offline when a stop went out never hears of it; it runs
 * no more of that schedule only because the coordinator sends none.
 */
export class ScheduleLedger {
  private readonly stops = new Map<string, ScheduleStop>();
  private readonly started = new Map<string, RunStart>();

  constructor(private readonly file: string) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      return;
    }
    try {
      const json = JSON.parse(text) as Partial<LedgerFile>;
      for (const [id, s] of Object.entries(json.stops ?? {})) {
        if (typeof s?.untilMs === "number") this.stops.set(id, s);
      }
      for (const [id, r] of Object.entries(json.started ?? {})) {
        if (typeof r?.run === "number" && typeof r.untilMs === "number") this.started.set(id, r);
      }
    } catch {
      // Written atomically, so never torn; an edited file is started afresh.
    }
  }

  stopOf(scheduleId: string): ScheduleStop | undefined {
    return this.stops.get(scheduleId);
  }

  lastStart(scheduleId: string): RunStart | undefined {
    return this.started.get(scheduleId);
  }

  /** Records a stop durably (false when it was known already). */
  addStop(scheduleId: string, stop: ScheduleStop, now: number): boolean {
    if (this.stops.has(scheduleId)) return false;
    this.stops.set(scheduleId, stop);
    this.save(now);
    return true;
  }

  /** Records, durably and before the run runs, that run `run` started now. */
  runStarted(scheduleId: string, run: number, now: number, untilMs: number): void {
    this.started.set(scheduleId, { run, atMs: now, untilMs });
    this.save(now);
  }

  private save(now: number): void {
    for (const map of [this.stops, this.started] as Array<Map<string, { untilMs: number }>>) {
      for (const [id, e] of map) if (e.untilMs <= now) map.delete(id);
      while (map.size > MAX_ENTRIES) {
        const soonest = [...map].sort((a, b) => a[1].untilMs - b[1].untilMs)[0]!;
        map.delete(soonest[0]);
      }
    }
    const body: LedgerFile = {
      stops: Object.fromEntries(this.stops),
      started: Object.fromEntries(this.started),
    };
    writeFileAtomic(this.file, JSON.stringify(body), 0o600);
  }
}
