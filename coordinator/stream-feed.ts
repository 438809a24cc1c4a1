import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  DiscardPolicy,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { Codes, DragnetError, type Logger } from "../common/mod.js";

// What agents send that must not be lost travels on JetStream streams, each
// read by every coordinator through its own durable consumer, acknowledged
// only once committed to its database; a message a coordinator took but never
// acknowledged (it died) is handed out again.
//
// - Results: a work-queue stream. An agent publishes a result on
//   <prefix>.res.<agent>.<coordinator>, the coordinator that sent the command;
//   each coordinator's consumer takes only its own, and a result leaves the
//   stream once acknowledged.
// - Alerts: a limits stream on <prefix>.alert.<agent>. Every coordinator
//   keeps every alert, so each consumer sees them all; they age out.
// - Evidence: collected files in chunks on <prefix>.evidence.<agent>.<coordinator>,
//   a work-queue stream like results.

/** Decodes what an agent sent, or refuses it as DECODE saying what it was meant to be. */
export function decodeOrRefuse<T>(kind: string, decode: (b: Uint8Array) => T, data: Uint8Array): T {
  try {
    return decode(data);
  } catch (err) {
    throw new DragnetError(Codes.DECODE, `${kind} does not decode: ${(err as Error).message}`);
  }
}

/** Reports a message refused for good (logged, counted, audited by the coordinator). */
export type Refusal = (
  agentId: string | undefined,
  subject: string,
  p: { code: string; message: string },
) => void;

export interface FeedOptions {
  prefix: string;
  /** This coordinator's id: its consumer's name (and, for results, the last token of their subjects). */
  coordinator: string;
  /** Copies kept by a NATS cluster (1 for a single server, 3 for a 3-node cluster). */
  replicas: number;
  /** How long a coordinator has to store and acknowledge a message before it is handed out again. */
  ackWaitMs: number;
}

interface FeedShape {
  /** Stream name after the prefix: <PREFIX>_<suffix>. */
  suffix: string;
  subjects: string[];
  /** Which of the stream's present subjects to keep beside this coordinator's (other coordinators'). */
  keepSubject: (subject: string) => boolean;
  filter: string;
  retention: RetentionPolicy;
  maxAgeMs: number;
  maxBytes: number;
  maxMsgsPerSubject: number;
  /** Refuse new messages when full instead of dropping the oldest. */
  discardNew?: boolean;
}

const NS_PER_MS = 1_000_000;
const DAY_MS = 86_400_000;

export function resultsFeed(o: FeedOptions): FeedShape {
  return {
    suffix: "RESULTS",
    // Each coordinator adds its own results (res.<agent>.<coordinator>.<command>): results
    // addressed to no coordinator are not stored, and each result is a subject of its own.
    subjects: [`${o.prefix}.res.*.${o.coordinator}.*`],
    keepSubject: (s) =>
      s.startsWith(`${o.prefix}.res.`) && s.split(".").length === o.prefix.split(".").length + 4,
    filter: `${o.prefix}.res.*.${o.coordinator}.*`,
    retention: RetentionPolicy.Workqueue,
    maxAgeMs: 7 * DAY_MS,
    // Bounded, so that no agent can fill the server; when full, new results are refused
    // (the agents keep them and send them again), never old ones dropped.
    maxBytes: 2 * 1024 * 1024 * 1024,
    maxMsgsPerSubject: 10,
    discardNew: true,
  };
}

export function alertsFeed(o: FeedOptions): FeedShape {
  return {
    suffix: "ALERTS",
    // alert.<agent>.<alert id>: one subject per alert, which no other agent can fill.
    subjects: [`${o.prefix}.alert.*.*`],
    keepSubject: () => false,
    filter: `${o.prefix}.alert.*.*`,
    retention: RetentionPolicy.Limits,
    // Long enough for a coordinator that was down over a holiday to catch up.
    maxAgeMs: 30 * DAY_MS,
    // When full, new alerts are refused (agents keep them and send them again), never
    // old ones dropped; what the coordinator refuses is deleted at once.
    maxBytes: 1024 * 1024 * 1024,
    maxMsgsPerSubject: 10,
    discardNew: true,
  };
}

export class StreamFeed {
  readonly stream: string;
  readonly consumer: string;
  private readonly shape: FeedShape;
  private messages?: ConsumerMessages;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: FeedOptions,
    shapeOf: (o: FeedOptions) => FeedShape,
    private readonly log: Logger,
  ) {
    this.shape = shapeOf(options);
    this.stream = `${options.prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_${this.shape.suffix}`;
    this.consumer = `coordinator_${options.coordinator}`;
  }

  /**
   * Creates (or updates) the stream and this coordinator's consumer; resolves
   * with the messages already waiting. A NATS cluster that is still electing
   * its JetStream leader is waited for (up to `patienceMs`).
   */
  async ensure(patienceMs = 60_000): Promise<{ backlog: number; lastSeq: number }> {
    const deadline = Date.now() + patienceMs;
    for (;;) {
      try {
        return await this.ensureOnce();
      } catch (err) {
        if (Date.now() > deadline) throw err;
        this.log.info("JetStream not ready yet; trying again", { stream: this.stream, error: err });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async ensureOnce(): Promise<{ backlog: number; lastSeq: number }> {
    const jsm = await jetstreamManager(this.nc);
    const present = await jsm.streams.info(this.stream).catch((err) => {
      if (/stream not found/i.test(String(err))) return undefined;
      throw err;
    });
    const others = (present?.config.subjects ?? []).filter(
      (s) => this.shape.keepSubject(s) && !this.shape.subjects.includes(s),
    );
    const config = {
      name: this.stream,
      subjects: [...others, ...this.shape.subjects],
      retention: this.shape.retention,
      storage: StorageType.File,
      num_replicas: this.options.replicas,
      // A message published again within this window (a retry) is stored once.
      duplicate_window: 120_000 * NS_PER_MS,
      max_age: this.shape.maxAgeMs * NS_PER_MS,
      max_msg_size: 1024 * 1024,
      max_bytes: this.shape.maxBytes,
      max_msgs_per_subject: this.shape.maxMsgsPerSubject,
      discard: this.shape.discardNew ? DiscardPolicy.New : DiscardPolicy.Old,
    };
    if (present) await jsm.streams.update(this.stream, config);
    else await jsm.streams.add(config);
    const consumer = {
      durable_name: this.consumer,
      filter_subject: this.shape.filter,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: this.options.ackWaitMs * NS_PER_MS,
      max_ack_pending: 100_000,
      max_deliver: -1,
    };
    let info: Awaited<ReturnType<typeof jsm.consumers.info>>;
    try {
      info = await jsm.consumers.add(this.stream, consumer);
    } catch {
      // It exists with other settings (an older coordinator made it): bring them up to date.
      const { durable_name: _name, ...update } = consumer;
      info = await jsm.consumers.update(this.stream, this.consumer, update);
    }
    if (info.num_waiting > 0) {
      // Pull requests already waiting: another coordinator with this id, or one that died moments ago.
      this.log.warn(
        "another consumer with this coordinator's id is active: every coordinator needs its own id",
        {
          stream: this.stream,
          consumer: this.consumer,
          waiting: info.num_waiting,
        },
      );
    }
    return this.waiting();
  }

  /** What waits for this coordinator now (not yet taken, or taken and not acknowledged), and the stream's last sequence. */
  async waiting(): Promise<{ backlog: number; lastSeq: number }> {
    const jsm = await jetstreamManager(this.nc);
    const info = await jsm.consumers.info(this.stream, this.consumer);
    const { state } = await jsm.streams.info(this.stream);
    return { backlog: info.num_pending + info.num_ack_pending, lastSeq: state.last_seq };
  }

  /** Hands every message to `onMessage` until stopped. */
  async consume(onMessage: (m: JsMsg) => void): Promise<void> {
    const c = await jetstream(this.nc).consumers.get(this.stream, this.consumer);
    // Bounded by count, not bytes: nats.js refills a byte-bounded pull with only the
    // bytes taken since, so after many small messages a larger one no longer fits and
    // the consumer stalls until its heartbeats are missed (about 30 s). Messages run
    // up to 1 MiB each, so 256 in flight stay well within memory. Pulls expire after
    // a second (heartbeats every half): a pull lost with the NATS node that led this
    // consumer is noticed and replaced within about a second, not 30 (measured: 43 s
    // of storage lag after that node died, 1.8 s now).
    this.messages = await c.consume({ max_messages: 256, expires: 1000, callback: onMessage });
    void this.messages.closed().then((err) => {
      if (err) this.log.error("stream consumer stopped", { stream: this.stream, error: err });
    });
  }

  /** Takes a refused message out of the stream at once (a stream that keeps what it was sent would keep it). */
  discard(m: JsMsg): void {
    m.term();
    void jetstreamManager(this.nc)
      .then((jsm) => jsm.streams.deleteMessage(this.stream, m.seq, false))
      .catch((err) =>
        this.log.warn("a refused message stays in the stream", { stream: this.stream, error: err }),
      );
  }

  async stop(): Promise<void> {
    await this.messages?.close().catch(() => undefined);
  }
}
