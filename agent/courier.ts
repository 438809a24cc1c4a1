import type { JetStreamClient } from "@nats-io/jetstream";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { Logger } from "../common/mod.js";
import type { Outbox } from "./outbox.js";

// Messages that must reach a JetStream stream (results, alerts): each waits
// in an on-disk outbox until the server has acknowledged storing it, and is
// tried again, oldest first, while the link is up.

export interface CourierRoute {
  subject: string;
  /** The stream stores a message published twice under one id once. */
  msgID: string;
}

export class Courier {
  /** Messages being published now (not to be sent twice at once). */
  private readonly delivering = new Set<string>();
  private flushing = false;

  constructor(
    readonly outbox: Outbox,
    /** Where a message goes, from its id and the destination kept with it in the outbox. */
    private readonly route: (id: string, destination: string) => CourierRoute,
    /** The JetStream client while connected. */
    private readonly link: () => JetStreamClient | undefined,
    /** The headers that authenticate a message (the agent's signature). */
    private readonly sign: (subject: string, data: Uint8Array) => MsgHdrs | undefined,
    private readonly log: Logger,
  ) {}

  /** Keeps a message and sends it now if the link is up; resolves whether the server has it. */
  send(id: string, destination: string, data: Uint8Array): Promise<boolean> {
    this.outbox.add(id, destination, data);
    return this.deliver(id, data);
  }

  private async deliver(id: string, data: Uint8Array): Promise<boolean> {
    const js = this.link();
    if (!js || this.delivering.has(id)) return false;
    this.delivering.add(id);
    try {
      const { subject, msgID } = this.route(id, this.outbox.destinationOf(id) ?? "");
      await js.publish(subject, data, { msgID, timeout: 10_000, headers: this.sign(subject, data) });
      this.outbox.remove(id);
      return true;
    } catch (err) {
      this.log.debug("not delivered yet; it stays in the outbox", { id, error: err });
      return false;
    } finally {
      this.delivering.delete(id);
    }
  }

  /** Tries the outbox again, oldest first, stopping at the first failure (the link or server is down). */
  async flush(signal: AbortSignal): Promise<void> {
    if (this.flushing || this.outbox.size === 0) return;
    this.flushing = true;
    try {
      for (const id of this.outbox.ids()) {
        if (signal.aborted) return;
        if (this.delivering.has(id)) continue;
        const data = this.outbox.read(id);
        if (data && !(await this.deliver(id, data))) return;
      }
    } finally {
      this.flushing = false;
    }
  }
}
