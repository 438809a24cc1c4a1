import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger, Subjects } from "../common/mod.js";
import { ActionEvent } from "../proto/api.js";

// Coordinators sharing a store tell each other of the actions they dispatch:
// each event of an open action, once committed, goes out on the action's own
// subject (core NATS: a console that misses one reads the store again), and a
// coordinator whose console follows an action it does not dispatch listens
// there. Only coordinators may use these subjects (nats-authority.ts).

export class PeerRelay {
  constructor(
    private readonly nats: () => NatsConnection | undefined,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {}

  /** Tells the other coordinators of an event of an action this one dispatches. */
  publish(actionId: string, event: ActionEvent): void {
    const nc = this.nats();
    if (!nc || nc.isClosed()) return;
    nc.publish(this.subjects.actionEvents(actionId), ActionEvent.encode(event).finish());
  }

  /** Follows what the dispatching coordinator says of an action, until the returned function is called. */
  follow(actionId: string, onEvent: (event: ActionEvent) => void): () => void {
    const nc = this.nats();
    if (!nc || nc.isClosed()) return () => undefined;
    const sub: Subscription = nc.subscribe(this.subjects.actionEvents(actionId), {
      callback: (err, m) => {
        if (err) return;
        try {
          onEvent(ActionEvent.decode(m.data));
        } catch (e) {
          this.log.warn("an action event from another coordinator does not decode", {
            action: actionId,
            error: e,
          });
        }
      },
    });
    return () => sub.unsubscribe();
  }

  /** Resolves once the server has every subscription made so far (a follower misses nothing after it). */
  async flush(): Promise<void> {
    await this.nats()?.flush();
  }
}
