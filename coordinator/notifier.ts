import type { Logger } from "../common/mod.js";

// Notifications: who was told what and when goes on the notebook; a role may
// also have a webhook (coordinator config "notify": {"legal counsel": URL}),
// which gets an HTTP POST of a JSON summary so the telling is done, not only
// written down. The page records what the webhook answered.

export interface Notification {
  incident: { id: string; title: string; severity: string; phase: string };
  to: string;
  message: string;
  by: string;
  atMs: number;
}

const TIMEOUT_MS = 10_000;

export class Notifier {
  constructor(
    private readonly webhooks: Readonly<Record<string, string>>,
    private readonly log: Logger,
  ) {}

  /** Posts to the role's webhook; "" when the role has none, else the HTTP status or the error. */
  async send(n: Notification): Promise<string> {
    const url = this.webhooks[n.to];
    if (!url) return "";
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          kind: "dragnet-incident-notification",
          ...n,
          at: new Date(n.atMs).toISOString(),
        }),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
      return `HTTP ${res.status}`;
    } catch (err) {
      this.log.warn("notification webhook failed", { to: n.to, error: err });
      return `failed: ${(err as Error).message}`;
    }
  }
}
