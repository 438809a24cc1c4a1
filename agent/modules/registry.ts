import type { Keyring, Logger } from "../../common/mod.js";
import { Codes, DragnetError } from "../../common/mod.js";
import type { Alert, Heartbeat, ModuleName, Operation, ParamsOf, ResultOf } from "../../proto/mod.js";

// A module is one place: its name (the Operation oneof case, whose option
// says whether it is an investigation or a response module), its parameter
// check (./<name>/check.ts, which the console runs too) and its run
// (./<name>/index.ts), and for modules that keep working between commands
// (persistent watches) a service the agent starts and stops with itself.
// The table of modules is generated from the oneof (modules.gen.ts); no
// switch elsewhere names modules.

/** What a module may ask the coordinator that sent its command (each a Subjects method of that name). */
export type CoordinatorTopic = "evidence" | "release" | "time";

export interface ModuleContext<S = undefined> {
  /** Aborted when the action's timeout passes or the agent stops. */
  signal: AbortSignal;
  log: Logger;
  /** The agent's state directory, for modules that keep state (baselines, vaults). */
  stateDir: string;
  /** The action being run (absent when a module is called directly, as benchmarks do). */
  actionId?: string;
  /** The agent's own files (state, keyring, credentials, config): response modules never move or send them. */
  protectedPaths?: readonly string[];
  /**
   * Asks the coordinator that sent the command (evidence chunks, release
   * parts, its clock): a request signed like everything the agent sends, answered by that
   * coordinator alone; rejects with UNAVAILABLE when no answer comes in time.
   */
  ask?: (topic: CoordinatorTopic, payload: Uint8Array, timeoutMs: number) => Promise<Uint8Array>;
  /** This agent's instance of the module's service (see AgentModule.service), once the agent started it. */
  service?: S;
}

/** What a module's service may use of the agent. */
export interface ModuleHost {
  stateDir: string;
  log: Logger;
  /** The NATS server URLs the agent is configured with. */
  natsServers: readonly string[];
  /** A lab agent (dragnet lab up): it must not cut off the investigator's own machine. */
  lab: boolean;
  /** Since when the link to NATS has been down; undefined while connected. */
  linkDownSince(): number | undefined;
  /** The agent's id and host name as its heartbeat gives them. */
  self(): { agentId: string; hostname: string };
  /** Hands an alert to the agent, which keeps it on disk until NATS has stored it. */
  alert(alert: Alert): void;
  /** Publishes a heartbeat now (a service's state that heartbeats carry has changed). */
  heartbeat(): void;
  /** Resolves once the NATS server has everything the agent sent so far; rejects when not connected. */
  flushed(): Promise<void>;
  /** The release keys file of the install config, if it names one. */
  releaseKeys?: string;
  /** The keyring file the agent trusts (the keyring module changes it). */
  keyringFile?: string;
  /** Trusts this keyring from the next command on. */
  trustKeyring(keyring: Keyring): void;
  /** Stops the agent once the commands running now have reported, and exits for a restart. */
  restart(reason: string): void;
}

/** Work a module does between commands, once per agent: started with the agent, stopped with it. */
export interface ModuleService {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Adds the service's state to the agent's heartbeat. */
  describe?(hb: Heartbeat): void;
}

export interface ModuleOutcome<N extends ModuleName> {
  found: boolean;
  result: ResultOf<N>;
}

export interface AgentModule<
  N extends ModuleName = ModuleName,
  S extends ModuleService | undefined = ModuleService | undefined,
> {
  name: N;
  /** Throws DragnetError(PARAMS) saying what is wrong. Runs before anything executes (./<name>/check.ts). */
  check(params: ParamsOf<N>): void;
  /** Makes this agent's instance of the module's service, for modules that keep working between commands. */
  service?(host: ModuleHost): S;
  /** Works through another module's service (unisolate through isolate's) instead of one of its own. */
  serviceFrom?: ModuleName;
  run(params: ParamsOf<N>, ctx: ModuleContext<S>): Promise<ModuleOutcome<N>>;
}

/** Any one module, whichever its name: what lists of modules hold. */
export type SomeModule = { [N in ModuleName]: AgentModule<N> }[ModuleName];

/** One module for each case of the Operation oneof: what modules.gen.ts holds. */
export type AgentModules = { readonly [N in ModuleName]: AgentModule<N> };

export function defineModule<N extends ModuleName, S extends ModuleService | undefined = undefined>(
  module: AgentModule<N, S>,
): AgentModule<N, S> {
  return module;
}

export class ModuleRegistry {
  private readonly modules = new Map<string, AgentModule>();
  private readonly services = new Map<string, ModuleService>();

  constructor(modules: readonly SomeModule[] = []) {
    for (const m of modules) this.register(m);
  }

  register(module: SomeModule): void {
    if (this.modules.has(module.name)) throw new Error(`module ${module.name} is registered twice`);
    this.modules.set(module.name, module as unknown as AgentModule);
  }

  get(name: string): AgentModule | undefined {
    return this.modules.get(name);
  }

  names(): string[] {
    return [...this.modules.keys()].sort();
  }

  /** Makes and starts every module's service for one agent; a service that fails to start is logged, not fatal. */
  async startServices(host: ModuleHost): Promise<void> {
    for (const m of this.modules.values()) {
      const service = m.service?.(host);
      if (!service) continue;
      this.services.set(m.name, service);
      await service
        .start()
        .catch((err) => host.log.error("module service did not start", { module: m.name, error: err }));
    }
  }

  async stopServices(): Promise<void> {
    await Promise.allSettled([...this.services.values()].map((s) => s.stop()));
    this.services.clear();
  }

  /** This agent's instance of a module's service (or of the module it works through), once started. */
  serviceOf(name: string): ModuleService | undefined {
    return this.services.get(this.modules.get(name)?.serviceFrom ?? name);
  }

  /** Lets every service add what it knows to a heartbeat (isolation state, say). */
  describe(hb: Heartbeat): void {
    for (const s of this.services.values()) s.describe?.(hb);
  }

  /** The module for an operation, or a refusal naming what is unknown. */
  resolve(op: Operation, index: number): { module: AgentModule; params: unknown } {
    if (!op.module) {
      throw new DragnetError(
        Codes.UNKNOWN_MODULE,
        `operation ${index + 1} names no module this agent knows (it has: ${this.names().join(", ")})`,
      );
    }
    const module = this.modules.get(op.module.$case);
    if (!module) {
      throw new DragnetError(
        Codes.UNKNOWN_MODULE,
        `operation ${index + 1}: this agent has no module "${op.module.$case}"`,
      );
    }
    return { module, params: op.module.value };
  }
}
