import type pg from "pg";
import { idsByPrefix, inTransaction } from "./pg-connect.js";
import { type RunRow, type ScheduleRow, toRun, toSchedule } from "./sqlite-rows.js";
import {
  NO_TALLY,
  type RunTally,
  type ScheduleStore,
  type StoredSchedule,
  type StoredScheduleRun,
} from "./store.js";

// The PostgreSQL store's schedules (the same tables as SQLite's). A run is
// claimed once across every coordinator: the schedule's row is updated only
// while its last run is below the one claimed, and the run's row is written in
// that same transaction.

export class PgSchedules implements ScheduleStore {
  constructor(private readonly pool: pg.Pool) {}

  private async rows<R>(sql: string, values: unknown[]): Promise<R[]> {
    return (await this.pool.query(sql, values)).rows as R[];
  }

  async put(s: StoredSchedule): Promise<void> {
    await this.pool.query(
      `INSERT INTO schedules (id, name, target, signed, signer_names, modules, incident_id, every_ms, runs,
                              first_run_at, ends_at, submitted_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      [
        s.id,
        s.name,
        s.target,
        Buffer.from(s.signed),
        JSON.stringify(s.signerNames),
        JSON.stringify(s.modules),
        s.incidentId,
        s.everyMs,
        s.runs,
        s.firstRunAtMs,
        s.endsAtMs,
        s.submittedAtMs,
      ],
    );
  }

  async get(id: string): Promise<StoredSchedule | undefined> {
    const row = (await this.rows<ScheduleRow>("SELECT * FROM schedules WHERE id = $1", [id]))[0];
    return row && toSchedule(row);
  }

  idsByPrefix(prefix: string, limit: number): Promise<string[]> {
    return idsByPrefix(this.pool, "schedules", prefix, limit);
  }

  async list(limit: number): Promise<StoredSchedule[]> {
    const rows = await this.rows<ScheduleRow>(
      `SELECT * FROM schedules ORDER BY submitted_at DESC, id COLLATE "C" DESC LIMIT $1`,
      [limit],
    );
    return rows.map(toSchedule);
  }

  async active(now: number): Promise<StoredSchedule[]> {
    const rows = await this.rows<ScheduleRow>(
      "SELECT * FROM schedules WHERE stopped_at IS NULL AND ends_at > $1",
      [now],
    );
    return rows.map(toSchedule);
  }

  async claimRun(run: StoredScheduleRun): Promise<boolean> {
    return inTransaction(this.pool, async (c) => {
      const claimed = await c.query(
        "UPDATE schedules SET last_run = $1 WHERE id = $2 AND last_run < $1 AND stopped_at IS NULL",
        [run.run, run.scheduleId],
      );
      if (claimed.rowCount === 0) return false;
      await c.query(
        "INSERT INTO schedule_runs (schedule_id, run, action_id, issued_at, targeted) VALUES ($1, $2, $3, $4, $5)",
        [run.scheduleId, run.run, run.actionId, run.issuedAtMs, run.targeted],
      );
      return true;
    });
  }

  async stop(id: string, atMs: number, by: string, reason: string, signed: Uint8Array): Promise<boolean> {
    const r = await this.pool.query(
      `UPDATE schedules SET stopped_at = $1, stopped_by = $2, stop_reason = $3, stop_signed = $4
       WHERE id = $5 AND stopped_at IS NULL`,
      [atMs, by, reason, Buffer.from(signed), id],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async runs(scheduleId: string, limit: number): Promise<StoredScheduleRun[]> {
    const rows = await this.rows<RunRow>(
      "SELECT * FROM schedule_runs WHERE schedule_id = $1 ORDER BY run DESC LIMIT $2",
      [scheduleId, limit],
    );
    return rows.map(toRun).reverse();
  }

  async run(scheduleId: string, run: number): Promise<StoredScheduleRun | undefined> {
    const row = (
      await this.rows<RunRow>("SELECT * FROM schedule_runs WHERE schedule_id = $1 AND run = $2", [
        scheduleId,
        run,
      ])
    )[0];
    return row && toRun(row);
  }

  async stoppedUntil(now: number): Promise<StoredSchedule[]> {
    const rows = await this.rows<ScheduleRow>(
      "SELECT * FROM schedules WHERE stopped_at IS NOT NULL AND ends_at > $1",
      [now],
    );
    return rows.map(toSchedule);
  }

  async lastRows(scheduleId: string, agentId: string): Promise<{ run: number; rows: string[] } | undefined> {
    const row = (
      await this.rows<{ run: number; rows: string }>(
        "SELECT run, rows FROM schedule_rows WHERE schedule_id = $1 AND agent_id = $2",
        [scheduleId, agentId],
      )
    )[0];
    return row && { run: row.run, rows: JSON.parse(row.rows) as string[] };
  }

  async recordAnswer(
    scheduleId: string,
    agentId: string,
    run: number,
    rows: string[] | undefined,
    tally: Partial<RunTally>,
  ): Promise<void> {
    const t = { ...NO_TALLY, ...tally };
    await inTransaction(this.pool, async (c) => {
      if (rows) {
        await c.query(
          `INSERT INTO schedule_rows (schedule_id, agent_id, run, rows) VALUES ($1, $2, $3, $4)
           ON CONFLICT (schedule_id, agent_id) DO UPDATE SET run = excluded.run, rows = excluded.rows
           WHERE excluded.run > schedule_rows.run`,
          [scheduleId, agentId, run, JSON.stringify(rows)],
        );
      }
      await c.query(
        `UPDATE schedule_runs SET compared = compared + $1, baselines = baselines + $2, changed = changed + $3,
           added = added + $4, vanished = vanished + $5, failed = failed + $6
         WHERE schedule_id = $7 AND run = $8`,
        [t.compared, t.baselines, t.changed, t.added, t.vanished, t.failed, scheduleId, run],
      );
    });
  }
}
