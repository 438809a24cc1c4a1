import type Database from "better-sqlite3";
import { type RunRow, type ScheduleRow, toRun, toSchedule } from "./sqlite-rows.js";
import {
  NO_TALLY,
  type RunTally,
  type ScheduleStore,
  type StoredSchedule,
  type StoredScheduleRun,
} from "./store.js";

// The SQLite store's schedules: the signed schedules, one row per issued run
// with what its answers changed, and each host's rows of its latest run.

export class SqliteSchedules implements ScheduleStore {
  private readonly s;
  private readonly claimTx: (run: StoredScheduleRun) => boolean;
  private readonly answerTx: (
    scheduleId: string,
    agentId: string,
    run: number,
    rows: string[] | undefined,
    tally: Partial<RunTally>,
  ) => void;

  constructor(db: Database.Database) {
    this.s = {
      insert: db.prepare(`
        INSERT INTO schedules (id, name, target, signed, signer_names, modules, incident_id, every_ms, runs,
                               first_run_at, ends_at, submitted_at)
        VALUES (@id, @name, @target, @signed, @signerNames, @modules, @incidentId, @everyMs, @runs,
                @firstRunAtMs, @endsAtMs, @submittedAtMs)`),
      get: db.prepare("SELECT * FROM schedules WHERE id = ?"),
      byPrefix: db.prepare("SELECT id FROM schedules WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"),
      list: db.prepare("SELECT * FROM schedules ORDER BY submitted_at DESC, id DESC LIMIT ?"),
      active: db.prepare("SELECT * FROM schedules WHERE stopped_at IS NULL AND ends_at > ?"),
      claim: db.prepare(
        "UPDATE schedules SET last_run = ? WHERE id = ? AND last_run < ? AND stopped_at IS NULL",
      ),
      insertRun: db.prepare(`
        INSERT INTO schedule_runs (schedule_id, run, action_id, issued_at, targeted)
        VALUES (@scheduleId, @run, @actionId, @issuedAtMs, @targeted)`),
      stop: db.prepare(`
        UPDATE schedules SET stopped_at = ?, stopped_by = ?, stop_reason = ?, stop_signed = ?
        WHERE id = ? AND stopped_at IS NULL`),
      runs: db.prepare("SELECT * FROM schedule_runs WHERE schedule_id = ? ORDER BY run DESC LIMIT ?"),
      run: db.prepare("SELECT * FROM schedule_runs WHERE schedule_id = ? AND run = ?"),
      stopped: db.prepare("SELECT * FROM schedules WHERE stopped_at IS NOT NULL AND ends_at > ?"),
      lastRows: db.prepare("SELECT run, rows FROM schedule_rows WHERE schedule_id = ? AND agent_id = ?"),
      putRows: db.prepare(`
        INSERT INTO schedule_rows (schedule_id, agent_id, run, rows) VALUES (?, ?, ?, ?)
        ON CONFLICT (schedule_id, agent_id) DO UPDATE SET run = excluded.run, rows = excluded.rows
        WHERE excluded.run > schedule_rows.run`),
      tally: db.prepare(`
        UPDATE schedule_runs SET compared = compared + @compared, baselines = baselines + @baselines,
          changed = changed + @changed, added = added + @added, vanished = vanished + @vanished,
          failed = failed + @failed
        WHERE schedule_id = @scheduleId AND run = @run`),
    };
    this.claimTx = db.transaction((run: StoredScheduleRun) => {
      if (this.s.claim.run(run.run, run.scheduleId, run.run).changes === 0) return false;
      this.s.insertRun.run(run);
      return true;
    });
    this.answerTx = db.transaction((scheduleId, agentId, run, rows, tally) => {
      if (rows) this.s.putRows.run(scheduleId, agentId, run, JSON.stringify(rows));
      this.s.tally.run({
        ...NO_TALLY,
        ...tally,
        scheduleId,
        run,
      });
    });
  }

  async put(s: StoredSchedule): Promise<void> {
    this.s.insert.run({
      ...s,
      signed: Buffer.from(s.signed),
      signerNames: JSON.stringify(s.signerNames),
      modules: JSON.stringify(s.modules),
    });
  }

  async get(id: string): Promise<StoredSchedule | undefined> {
    const row = this.s.get.get(id) as ScheduleRow | undefined;
    return row && toSchedule(row);
  }

  async idsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return (this.s.byPrefix.all(prefix, `${prefix}\uffff`, limit) as Array<{ id: string }>).map((r) => r.id);
  }

  async list(limit: number): Promise<StoredSchedule[]> {
    return (this.s.list.all(limit) as ScheduleRow[]).map(toSchedule);
  }

  async active(now: number): Promise<StoredSchedule[]> {
    return (this.s.active.all(now) as ScheduleRow[]).map(toSchedule);
  }

  async claimRun(run: StoredScheduleRun): Promise<boolean> {
    return this.claimTx(run);
  }

  async stop(id: string, atMs: number, by: string, reason: string, signed: Uint8Array): Promise<boolean> {
    return this.s.stop.run(atMs, by, reason, Buffer.from(signed), id).changes > 0;
  }

  async runs(scheduleId: string, limit: number): Promise<StoredScheduleRun[]> {
    return (this.s.runs.all(scheduleId, limit) as RunRow[]).map(toRun).reverse();
  }

  async run(scheduleId: string, run: number): Promise<StoredScheduleRun | undefined> {
    const row = this.s.run.get(scheduleId, run) as RunRow | undefined;
    return row && toRun(row);
  }

  async stoppedUntil(now: number): Promise<StoredSchedule[]> {
    return (this.s.stopped.all(now) as ScheduleRow[]).map(toSchedule);
  }

  async lastRows(scheduleId: string, agentId: string): Promise<{ run: number; rows: string[] } | undefined> {
    const row = this.s.lastRows.get(scheduleId, agentId) as { run: number; rows: string } | undefined;
    return row && { run: row.run, rows: JSON.parse(row.rows) as string[] };
  }

  async recordAnswer(
    scheduleId: string,
    agentId: string,
    run: number,
    rows: string[] | undefined,
    tally: Partial<RunTally>,
  ): Promise<void> {
    this.answerTx(scheduleId, agentId, run, rows, tally);
  }
}
