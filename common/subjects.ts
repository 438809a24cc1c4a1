// NATS subject names of the wire contract (DESIGN.md, "Wire contract").
// Agent ids are restricted to characters that are safe in a subject token.

export const DEFAULT_PREFIX = "dragnet";

const TOKEN_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function isSubjectToken(value: string): boolean {
  return TOKEN_RE.test(value);
}

export class Subjects {
  constructor(readonly prefix: string = DEFAULT_PREFIX) {
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) {
      throw new Error(`invalid subject prefix "${prefix}"`);
    }
  }

  heartbeat(agentId: string): string {
    return `${this.prefix}.hb.${agentId}`;
  }
  command(agentId: string): string {
    return `${this.prefix}.cmd.${agentId}`;
  }
  ack(agentId: string): string {
    return `${this.prefix}.ack.${agentId}`;
  }
  result(agentId: string): string {
    return `${this.prefix}.res.${agentId}`;
  }

  /** Wildcards the coordinator subscribes to. */
  get allHeartbeats(): string {
    return `${this.prefix}.hb.*`;
  }
  get allAcks(): string {
    return `${this.prefix}.ack.*`;
  }
  get allResults(): string {
    return `${this.prefix}.res.*`;
  }

  /** The agent id a message claims by the subject it was published on. */
  agentOf(subject: string): string | undefined {
    const last = subject.lastIndexOf(".");
    const token = subject.slice(last + 1);
    return isSubjectToken(token) ? token : undefined;
  }
}
