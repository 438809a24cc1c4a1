import { lookup } from "node:dns/promises";
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { Codes, DragnetError, writeFileAtomic } from "../../../common/mod.js";
import type { Heartbeat, IsolateParams, IsolateResult } from "../../../proto/mod.js";
import { defineModule, type ModuleContext, type ModuleHost, type ModuleService } from "../registry.js";
import { checkIsolate, parsePeer } from "./check.js";
import {
  applyIsolation,
  type FirewallMethod,
  firewallMethod,
  type IsolationPlan,
  isolationInForce,
  removeIsolation,
} from "./firewall.js";
import { takeVolatileState } from "./volatile.js";

// `isolate` and `unisolate`: contain a host in seconds while keeping the
// responders' line to it. The state lives in the agent's state directory
// (isolation.json) and the service re-applies the rules whenever the agent
// starts, so a restart — or a reboot that flushed the kernel's rules — does
// not free the host. It lifts isolation by itself only when the action said
// so: at its release time, or after the NATS link was down for the time the
// action gave (by default never: an attacker who cuts the link must not free
// the host that way).

/** How often the link-loss rule is looked at. */
const LINK_CHECK_MS = 5000;

interface IsolationState {
  version: 1;
  sinceMs: number;
  actionId: string;
  method: FirewallMethod;
  plan: IsolationPlan;
  rules: string;
  releaseAtMs: number;
  releaseOnLinkLossSeconds: number;
}

function unsupported(): DragnetError | undefined {
  if (process.platform === "linux") return undefined;
  return new DragnetError(
    Codes.MODULE_FAILED,
    `isolate: not supported on this OS (${process.platform}): isolation is built for Linux (nftables or iptables); macOS (pf) and Windows (WFP) are not built yet`,
  );
}

/**
 * Whether this process runs in the machine's own network namespace: the one
 * PID 1 is in or, where PID 1's cannot be read (containers, sandboxes), not
 * one of the namespaces `ip netns` made (the lab's). Cannot tell: assume it is.
 */
function inHostNetworkNamespace(): boolean {
  const self = statSync("/proc/self/ns/net").ino;
  try {
    return statSync("/proc/1/ns/net").ino === self;
  } catch {
    // not readable here
  }
  try {
    return !readdirSync("/run/netns").some((n) => {
      try {
        return statSync(join("/run/netns", n)).ino === self;
      } catch {
        return false;
      }
    });
  } catch {
    return true;
  }
}

/** The addresses of the agent's NATS servers, resolved now. */
async function natsPeers(servers: readonly string[], errors: string[]): Promise<IsolationPlan["nats"]> {
  const peers: IsolationPlan["nats"] = [];
  for (const s of servers) {
    try {
      const url = new URL(s.includes("://") ? s : `nats://${s}`);
      const host = url.hostname.replace(/^\[|\]$/g, "");
      const port = Number(url.port || 4222);
      const ips = isIP(host) ? [host] : (await lookup(host, { all: true })).map((a) => a.address);
      for (const ip of ips) if (!peers.some((p) => p.ip === ip && p.port === port)) peers.push({ ip, port });
    } catch (err) {
      errors.push(`NATS server ${s}: ${(err as Error).message}`);
    }
  }
  return peers;
}

function resolvers(): string[] {
  try {
    return readFileSync("/etc/resolv.conf", "utf8")
      .split("\n")
      .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
      .filter((ip): ip is string => !!ip && isIP(ip) !== 0);
  } catch {
    return [];
  }
}

/** One agent's isolation: kept on disk, re-applied at start, lifted by unisolate or by the action's own rules. */
export class Isolation implements ModuleService {
  private state?: IsolationState;
  private releaseTimer?: NodeJS.Timeout;
  private linkTimer?: NodeJS.Timeout;
  private readonly file: string;

  constructor(private readonly host: ModuleHost) {
    this.file = join(host.stateDir, "isolation.json");
  }

  async start(): Promise<void> {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return; // not isolated
    }
    const state = JSON.parse(text) as IsolationState;
    if (state.version !== 1) throw new Error(`${this.file} has format ${state.version}`);
    this.state = state;
    if (state.releaseAtMs && Date.now() >= state.releaseAtMs) {
      this.lift("its release time passed while the agent was not running");
      return;
    }
    // The kernel's rules may be gone (a reboot) or intact (a restart): put them in force either way.
    const errors: string[] = [];
    const fresh = await natsPeers(this.host.natsServers, errors);
    for (const p of fresh)
      if (!state.plan.nats.some((n) => n.ip === p.ip && n.port === p.port)) state.plan.nats.push(p);
    state.rules = applyIsolation(state.method, state.plan);
    this.save();
    this.schedule();
    this.host.log.warn("host isolation re-applied at start", {
      since: new Date(state.sinceMs).toISOString(),
      action: state.actionId,
    });
  }

  async stop(): Promise<void> {
    // Isolation stays in force while the agent is down: only the timers stop.
    clearTimeout(this.releaseTimer);
    clearInterval(this.linkTimer);
  }

  describe(hb: Heartbeat): void {
    if (!this.state) return;
    hb.isolated = true;
    hb.isolatedSinceMs = this.state.sinceMs;
    hb.isolationActionId = this.state.actionId;
  }

  get isolated(): boolean {
    return this.state !== undefined;
  }

  async isolate(p: IsolateParams, ctx: ModuleContext<Isolation>): Promise<IsolateResult> {
    const refusal = unsupported();
    if (refusal) throw refusal;
    if (this.host.lab && !p.forceHost && inHostNetworkNamespace()) {
      throw new DragnetError(
        Codes.PARAMS,
        "isolate: this lab agent runs in the machine's own network namespace; isolating it would cut off the machine you work on. Use `dragnet lab up --netns`, or --force-host if you mean it",
      );
    }
    const method = firewallMethod();
    const errors: string[] = [];
    const nats = await natsPeers(this.host.natsServers, errors);
    if (nats.length === 0) {
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `isolate: no NATS server address could be resolved (${errors.join("; ")}): isolating now would cut the agent off for good`,
      );
    }
    const plan: IsolationPlan = {
      nats,
      dns: p.allowDns ? resolvers() : [],
      allow: p.allow.map((a) => parsePeer(a)!),
    };
    // Evidence first: what ran and who talked to whom, before the rules change anything.
    const snapshot = await takeVolatileState(ctx);
    const rules = applyIsolation(method, plan);
    const now = Date.now();
    this.state = {
      version: 1,
      sinceMs: this.state?.sinceMs ?? now,
      actionId: ctx.actionId ?? "",
      method,
      plan,
      rules,
      releaseAtMs: p.releaseAfterSeconds ? now + p.releaseAfterSeconds * 1000 : 0,
      releaseOnLinkLossSeconds: p.releaseOnLinkLossSeconds,
    };
    this.save();
    this.schedule();
    this.host.log.warn("host isolated", {
      action: this.state.actionId,
      method,
      kept: nats.map((n) => `${n.ip}:${n.port}`),
    });
    return { ...this.report(false), snapshot, errors };
  }

  unisolate(statusOnly: boolean): IsolateResult {
    const refusal = unsupported();
    if (refusal) throw refusal;
    if (statusOnly) return this.report(false);
    const before = this.report(false);
    const removed = this.lift("unisolate");
    return { ...before, isolated: false, removed };
  }

  private report(removed: boolean): IsolateResult {
    const s = this.state;
    return {
      isolated: s !== undefined && isolationInForce(s.method),
      sinceMs: s?.sinceMs ?? 0,
      actionId: s?.actionId ?? "",
      method: s?.method ?? "",
      rules: s?.rules ?? "",
      kept: s?.plan.nats.map((n) => `${n.ip}:${n.port}`) ?? [],
      releaseAtMs: s?.releaseAtMs ?? 0,
      releaseOnLinkLossSeconds: s?.releaseOnLinkLossSeconds ?? 0,
      snapshot: undefined,
      removed,
      errors: [],
    };
  }

  /** Removes the agent's rules and its record; whether rules were there. */
  private lift(why: string): boolean {
    clearTimeout(this.releaseTimer);
    clearInterval(this.linkTimer);
    let removed = false;
    try {
      removed = removeIsolation(this.state?.method ?? firewallMethod());
    } finally {
      this.state = undefined;
      rmSync(this.file, { force: true });
      this.host.log.warn("host isolation lifted", { why });
      this.host.heartbeat();
    }
    return removed;
  }

  private save(): void {
    writeFileAtomic(this.file, `${JSON.stringify(this.state)}\n`, 0o600);
    this.host.heartbeat();
  }

  private schedule(): void {
    clearTimeout(this.releaseTimer);
    clearInterval(this.linkTimer);
    const s = this.state;
    if (!s) return;
    if (s.releaseAtMs) {
      // setTimeout holds at most ~24.8 days; a longer release is looked at again then.
      const wait = Math.min(s.releaseAtMs - Date.now(), 2 ** 31 - 1);
      this.releaseTimer = setTimeout(
        () => {
          if (Date.now() >= s.releaseAtMs) this.lift("the action's release time came");
          else this.schedule();
        },
        Math.max(0, wait),
      );
    }
    if (s.releaseOnLinkLossSeconds) {
      this.linkTimer = setInterval(() => {
        const down = this.host.linkDownSince();
        if (down !== undefined && Date.now() - down >= s.releaseOnLinkLossSeconds * 1000) {
          this.lift(`no NATS server reachable for ${s.releaseOnLinkLossSeconds} s, as the action allowed`);
        }
      }, LINK_CHECK_MS);
    }
  }
}

export const isolateModule = defineModule({
  name: "isolate",
  check: checkIsolate,
  service: (host) => new Isolation(host),
  async run(p, ctx) {
    if (!ctx.service)
      throw new DragnetError(Codes.MODULE_FAILED, "isolate: this agent runs no isolation service");
    const result = await ctx.service.isolate(p, ctx);
    return { found: result.isolated, result };
  },
});
