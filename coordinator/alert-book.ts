import type { JsMsg } from "@nats-io/jetstream";
import { Codes, DragnetError, isId, type Logger, problemOf } from "../common/mod.js";
import { Alert, type StoredAlert } from "../proto/api.js";
import type { Store, StoredAlert as StoredAlertRow } from "./store/store.js";
import { decodeOrRefuse, type Refusal } from "./stream-feed.js";
import type { WriteBatcher } from "./write-batcher.js";

// Alerts from the agents' persistent watches: taken from the alerts stream,
// checked, stored, acknowledged once committed, and pushed to whoever follows
// them (`dragnet alerts --follow`). An alert is refused when it does not
// decode, claims another agent than the subject it came on (NATS credentials
// bind an agent to its own subjects), or is out of bounds; a refusal is
// logged and audited, and the alert leaves the stream.

const MAX_CHANGES = 20_000;
/** What makes an alert refused for good (nothing else is the alert's fault). */
const REFUSED = new Set<string>([
  Codes.DECODE,
  Codes.SUBJECT_MISMATCH,
  Codes.AGENT_UNSIGNED,
  Codes.AGENT_SIGNATURE,
]);
const TOKEN = /^[A-Za-z0-9._-]{0,64}$/;
/** Rows read per query while filtering by target. */
const PAGE = 1000;

export interface AlertFilter {
  /** Agents whose alerts to keep; undefined keeps every agent's. */
  agents?: Set<string>;
}

type Listener = (alert: StoredAlert) => void;

/** A follower: what it wants, where it has got to, and whether a catch-up of it is under way. */
interface Follower {
  filter: AlertFilter;
  send: Listener;
  cursor: number;
  /** A catch-up is reading for it: another asked meanwhile runs again after it instead of beside it. */
  reading: boolean;
  again: boolean;
}

export function toApi(row: StoredAlertRow): StoredAlert {
  return { seq: row.seq, receivedAtMs: row.receivedAtMs, alert: Alert.decode(row.payload) };
}

/** Checks what an agent sent (on `subject`, which ends in the alert's id); throws DragnetError saying what is wrong. */
export function checkAlert(alert: Alert, agentId: string, subject: string): void {
  const refuse = (message: string): never => {
    throw new DragnetError(Codes.DECODE, `alert: ${message}`);
  };
  if (alert.agentId !== agentId) {
    throw new DragnetError(
      Codes.SUBJECT_MISMATCH,
      `alert from ${alert.agentId.slice(0, 64)} published as ${agentId}`,
    );
  }
  if (!subject.endsWith(`.${alert.id}`)) {
    throw new DragnetError(
      Codes.SUBJECT_MISMATCH,
      `alert ${alert.id.slice(0, 64)} came on ${subject.slice(0, 200)}`,
    );
  }
  if (!isId(alert.id)) refuse("the id is not a Dragnet id");
  for (const [field, value] of [
    ["source", alert.source],
    ["watch", alert.watch],
    ["detected_by", alert.detectedBy],
  ] as const) {
    if (!TOKEN.test(value)) refuse(`${field} must be at most 64 letters, digits, . _ -`);
  }
  if (alert.actionId && !isId(alert.actionId)) refuse("the action id is not a Dragnet id");
  // Only the coordinator raises a schedule's alerts (it compares the runs' answers).
  if (alert.scheduleId || alert.run || alert.rows.length > 0 || alert.source === "schedule") {
    refuse("a schedule's alert comes from the coordinator, not from an agent");
  }
  if (alert.hostname.length > 255) refuse("the hostname is longer than 255 characters");
  if (alert.changes.length > MAX_CHANGES) refuse(`more than ${MAX_CHANGES} changes`);
  if (alert.changes.length === 0 && alert.changesOmitted === 0) refuse("no change");
}

export class AlertBook {
  private readonly listeners = new Set<Follower>();
  private readonly stats = { stored: 0, refused: 0 };
  /** Told of each alert once it is committed (the notebook's alert page). */
  onAlert: (alert: Alert) => void = () => undefined;

  constructor(
    private readonly store: Store,
    private readonly batcher: WriteBatcher,
    /** The agent that signed a message (throws when none did). */
    private readonly authenticate: (m: JsMsg) => string,
    private readonly log: Logger,
    private readonly refused: Refusal,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * One alert from the stream: stored, then acknowledged and pushed to
   * followers once committed; a refused one is taken out of the stream
   * (`discard`).
   */
  onMessage(m: JsMsg, discard: (m: JsMsg) => void): void {
    let agentId: string | undefined;
    try {
      agentId = this.authenticate(m);
      const alert = decodeOrRefuse("alert", Alert.decode, m.data);
      checkAlert(alert, agentId, m.subject);
      this.batcher.alert({
        id: alert.id,
        agentId,
        atMs: alert.atMs,
        receivedAtMs: this.now(),
        payload: m.data,
      });
      this.stats.stored++;
      this.batcher.afterCommit(() => {
        m.ack();
        this.deliver();
        this.onAlert(alert);
      });
    } catch (err) {
      const p = problemOf(err);
      if (!REFUSED.has(p.code)) {
        // Not the alert's fault (the store is failing): it comes back.
        this.log.error("alert not stored; it will be handed out again", { subject: m.subject, ...p });
        m.nak(2000);
        return;
      }
      this.stats.refused++;
      discard(m);
      this.refused(agentId, m.subject, p);
    }
  }

  /**
   * An alert the coordinator itself raised (a schedule's run changed a host's
   * rows): stored like an agent's, then pushed to followers once committed.
   */
  record(alert: Alert): void {
    this.batcher.alert({
      id: alert.id,
      agentId: alert.agentId,
      atMs: alert.atMs,
      receivedAtMs: this.now(),
      payload: Alert.encode(alert).finish(),
    });
    this.stats.stored++;
    this.batcher.afterCommit(() => {
      this.deliver();
      this.onAlert(alert);
    });
  }

  /** Newest alerts first, at most `limit`, received at or after `sinceMs`, of the agents in the filter. */
  async list(filter: AlertFilter, sinceMs: number, limit: number): Promise<StoredAlert[]> {
    await this.batcher.flush();
    const out: StoredAlertRow[] = [];
    let before = Number.MAX_SAFE_INTEGER;
    while (out.length < limit) {
      const rows = await this.store.alertsBefore(before, sinceMs, PAGE);
      for (const r of rows) if (!filter.agents || filter.agents.has(r.agentId)) out.push(r);
      if (rows.length < PAGE) break;
      before = rows[rows.length - 1]!.seq;
    }
    return out.slice(0, limit).map(toApi);
  }

  /**
   * Sends the stored alerts after `afterSeq` (0: none of the past, unless `fromCursor`: then
   * 0 is a cursor too), then each new one as it is committed, until the returned function is called.
   */
  async follow(
    filter: AlertFilter,
    afterSeq: number,
    send: Listener,
    fromCursor = false,
  ): Promise<() => void> {
    await this.batcher.flush();
    // Alerts committed from here on lie past the cursor: the catch-up below, or a later one, sends them.
    const cursor = afterSeq > 0 || fromCursor ? afterSeq : await this.lastSeq();
    const listener: Follower = { filter, send, cursor, reading: false, again: false };
    this.listeners.add(listener);
    this.catchUp(listener);
    return () => this.listeners.delete(listener);
  }

  private async lastSeq(): Promise<number> {
    return (await this.store.alertsBefore(Number.MAX_SAFE_INTEGER, 0, 1))[0]?.seq ?? 0;
  }

  /** Followers read what the store holds past their cursors (alerts another coordinator stored too). */
  catchUpFollowers(): void {
    this.deliver();
  }

  private deliver(): void {
    for (const l of this.listeners) this.catchUp(l);
  }

  /**
   * Sends a follower what was stored past its cursor. One read at a time per
   * follower (two at once would send the same alerts twice); one asked for
   * meanwhile runs once this one is done. A failed read is logged and the
   * cursor stays: the next alert's catch-up sends what was missed.
   */
  private catchUp(l: Follower): void {
    if (l.reading) {
      l.again = true;
      return;
    }
    l.reading = true;
    this.readFor(l).catch((err: unknown) => this.log.error("alerts not sent to a follower", { error: err }));
  }

  private async readFor(l: Follower): Promise<void> {
    try {
      do {
        l.again = false;
        for (;;) {
          const rows = await this.store.alertsAfter(l.cursor, PAGE);
          if (!this.listeners.has(l)) return; // it stopped following while this was read
          for (const r of rows) {
            l.cursor = r.seq;
            if (!l.filter.agents || l.filter.agents.has(r.agentId)) l.send(toApi(r));
            if (!this.listeners.has(l)) return;
          }
          if (rows.length < PAGE) break;
        }
      } while (l.again && this.listeners.has(l));
    } finally {
      l.reading = false;
    }
  }

  counters() {
    return { ...this.stats };
  }
}
