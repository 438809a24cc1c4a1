import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../common/mod.js";

// Results travel on a JetStream work-queue stream: an agent's result is
// stored by the NATS server (replicated in a cluster) before the agent lets it
// go, and leaves the stream only when its coordinator has committed it to its
// database and acknowledged it. Agents publish a result on
// <prefix>.res.<agent>.<coordinator>, the coordinator that sent the command;
// each coordinator pulls its own results through its own durable consumer, so
// several coordinators share the stream without seeing each other's results.
// A result a coordinator took but never acknowledged (it died) is handed out
// again.

export interface ResultStreamOptions {
  prefix: string;
  /** This coordinator's id: the last token of the subjects its results come on. */
  coordinator: string;
  /** Copies kept by a NATS cluster (1 for a single server, 3 for a 3-node cluster). */
  replicas: number;
  /** How long a coordinator has to store and acknowledge a result before it is handed out again. */
  ackWaitMs: number;
}

const NS_PER_MS = 1_000_000;

export class ResultStream {
  readonly stream: string;
  readonly consumer: string;
  private messages?: ConsumerMessages;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: ResultStreamOptions,
    private readonly log: Logger,
  ) {
    this.stream = `${options.prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_RESULTS`;
    this.consumer = `coordinator_${options.coordinator}`;
  }

  /**
   * Creates (or updates) the stream and the shared consumer; resolves with the
   * results already waiting. A NATS cluster that is still electing its
   * JetStream leader is waited for (up to `patienceMs`).
   */
  async ensure(patienceMs = 60_000): Promise<{ backlog: number; lastSeq: number }> {
    const deadline = Date.now() + patienceMs;
    for (;;) {
      try {
        return await this.ensureOnce();
      } catch (err) {
        if (Date.now() > deadline) throw err;
        this.log.info("JetStream not ready yet; trying again", { error: err });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async ensureOnce(): Promise<{ backlog: number; lastSeq: number }> {
    const jsm = await jetstreamManager(this.nc);
    const config = {
      name: this.stream,
      subjects: [`${this.options.prefix}.res.*.*`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: this.options.replicas,
      // A result published again within this window (a retry) is stored once.
      duplicate_window: 120_000 * NS_PER_MS,
      max_age: 7 * 86_400_000 * NS_PER_MS,
      max_msg_size: 1024 * 1024,
      // Bounded, so that no agent can fill the server: 2 GiB in all, 1,000 waiting results per agent and coordinator.
      max_bytes: 2 * 1024 * 1024 * 1024,
      max_msgs_per_subject: 1000,
    };
    try {
      await jsm.streams.info(this.stream);
      await jsm.streams.update(this.stream, config);
    } catch (err) {
      if (!/stream not found/i.test(String(err))) throw err;
      await jsm.streams.add(config);
    }
    const consumer = {
      durable_name: this.consumer,
      filter_subject: `${this.options.prefix}.res.*.${this.options.coordinator}`,
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
        "another consumer of this coordinator's results is active: every coordinator needs its own id",
        {
          consumer: this.consumer,
          waiting: info.num_waiting,
        },
      );
    }
    // The results waiting for this coordinator now are all at or below the stream's last sequence.
    const { state } = await jsm.streams.info(this.stream);
    return { backlog: info.num_pending + info.num_ack_pending, lastSeq: state.last_seq };
  }

  /** Hands every result to `onMessage` until stopped. */
  async consume(onMessage: (m: JsMsg) => void): Promise<void> {
    const c = await jetstream(this.nc).consumers.get(this.stream, this.consumer);
    // Bounded by bytes (results run up to 1 MiB each), not by count.
    this.messages = await c.consume({ max_bytes: 32 * 1024 * 1024, callback: onMessage });
    this.messages.closed().then((err) => {
      if (err) this.log.error("result consumer stopped", { error: err });
    });
  }

  async stop(): Promise<void> {
    await this.messages?.close().catch(() => undefined);
  }
}
