// NATS subject names of the wire contract (DESIGN.md, "Wire contract").
// Agent ids are restricted to characters that are safe in a subject token.

export const DEFAULT_PREFIX = "dragnet";
/** The coordinator id of a fleet with one coordinator (and of commands that name none). */
export const DEFAULT_COORDINATOR = "main";

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
  /** Acks and results go to the coordinator that sent the command. */
  ack(agentId: string, coordinator: string): string {
    return `${this.prefix}.ack.${agentId}.${coordinator}`;
  }
  /**
   * A result has a subject of its own, ending in its command id: nobody who
   * cannot read the agent's commands can name it, so no one can push it out
   * of the stream by filling its subject.
   */
  result(agentId: string, coordinator: string, commandId: string): string {
    return `${this.prefix}.res.${agentId}.${coordinator}.${commandId}`;
  }
  /** Pieces of a collected file: requests the coordinator that sent the collect command answers. */
  evidence(agentId: string, coordinator: string): string {
    return `${this.prefix}.evidence.${agentId}.${coordinator}`;
  }
  /** Parts of a release: requests the coordinator that sent the upgrade command answers. */
  release(agentId: string, coordinator: string): string {
    return `${this.prefix}.release.${agentId}.${coordinator}`;
  }
  /** Clock readings: requests the coordinator that sent the timedrift command answers. */
  time(agentId: string, coordinator: string): string {
    return `${this.prefix}.time.${agentId}.${coordinator}`;
  }
  /** Alerts go to every coordinator (each keeps its own copy from the alerts stream), each on a subject of its own. */
  alert(agentId: string, alertId: string): string {
    return `${this.prefix}.alert.${agentId}.${alertId}`;
  }

  /** Wildcards a coordinator subscribes to. */
  get allHeartbeats(): string {
    return `${this.prefix}.hb.*`;
  }
  acksFor(coordinator: string): string {
    return `${this.prefix}.ack.*.${coordinator}`;
  }
  resultsFor(coordinator: string): string {
    return `${this.prefix}.res.*.${coordinator}.*`;
  }
  evidenceFor(coordinator: string): string {
    return `${this.prefix}.evidence.*.${coordinator}`;
  }
  releasesFor(coordinator: string): string {
    return `${this.prefix}.release.*.${coordinator}`;
  }
  timeFor(coordinator: string): string {
    return `${this.prefix}.time.*.${coordinator}`;
  }
  /**
   * Coordinators sharing a store tell each other here: an action's events, published by the
   * coordinator that dispatches it, for consoles following it through another. Agents may
   * neither publish nor read these subjects.
   */
  actionEvents(actionId: string): string {
    return `${this.prefix}.coord.action.${actionId}`;
  }
  /** The subjects of the alerts stream. */
  get allAlerts(): string {
    return `${this.prefix}.alert.*.*`;
  }

  /** The agent id a message claims by the subject it was published on (`<prefix>.<kind>.<agent>[.<coordinator>]`). */
  agentOf(subject: string): string | undefined {
    if (!subject.startsWith(`${this.prefix}.`)) return undefined;
    const token = subject.slice(this.prefix.length + 1).split(".")[1];
    return token !== undefined && isSubjectToken(token) ? token : undefined;
  }
}
