import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import {
  aclNameOf,
  Codes,
  checkValidityWindow,
  DEFAULT_COORDINATOR,
  DragnetError,
  formatDuration,
  isId,
  isSubjectToken,
  type Keyring,
  type Logger,
  parseTarget,
  problemOf,
  type TargetExpr,
  type TargetSubject,
  targetMayInclude,
  type VerifiedAction,
  verifySignedAction,
} from "../common/mod.js";
import {
  checkRunWindow,
  checkSchedule,
  MAX_SCHEDULE_LEAD_MS,
  MAX_SCHEDULE_MS,
  runBody,
  verifyScheduleStop,
} from "../common/schedule.js";
import {
  CommandEnvelope,
  type CommandResult,
  CommandStatus,
  type OperationResult,
  resultCase,
  type SignedScheduleStop,
} from "../proto/mod.js";
import type { AgentModule, CoordinatorTopic, ModuleRegistry } from "./modules/registry.js";
import type { ReplayGuard } from "./replay-guard.js";
import type { ScheduleLedger } from "./schedule-ledger.js";

// Everything between a command's bytes arriving and its result leaving:
// decode, verify against the agent's own keyring, check the validity window
// and replay, check every operation's params, then run under a timeout. Each
// refusal is a DragnetError with a stable code and a reason for people.

/** NATS' default max_payload; commands larger than this cannot be legitimate. */
export const MAX_COMMAND_BYTES = 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 60_000;
export const MAX_TIMEOUT_MS = 6 * 3_600_000;
/** The longest validity window an agent accepts (the coordinator enforces the same). */
export const MAX_VALIDITY_MS = 30 * 86_400_000;
export const COMMAND_ID_RE = /^[0-9A-Za-z_-]{1,64}$/;

/** Where a command's ack and result go: the coordinator it names, if that is a plain token. */
export function coordinatorOf(envelope: Pick<CommandEnvelope, "coordinator">): string {
  return isSubjectToken(envelope.coordinator) ? envelope.coordinator : DEFAULT_COORDINATOR;
}

export interface AcceptedCommand {
  commandId: string;
  /** The coordinator that sent it: answers and evidence go there. */
  coordinator: string;
  verified: VerifiedAction;
  operations: Array<{ module: AgentModule; params: unknown }>;
}

export interface CommandRunnerDeps {
  agentId: string;
  keyring: Keyring;
  modules: ModuleRegistry;
  replay: ReplayGuard;
  /** Schedules investigators stopped, and the last run of each this agent started. */
  schedules?: ScheduleLedger;
  clockSkewMs: number;
  stateDir: string;
  /** The agent's own files (state, keyring, credentials, config), which response modules never touch. */
  protectedPaths: readonly string[];
  /** Asks a coordinator (evidence chunks, release parts), signed, request/reply. */
  ask?: (
    coordinator: string,
    topic: CoordinatorTopic,
    payload: Uint8Array,
    timeoutMs: number,
  ) => Promise<Uint8Array>;
  log: Logger;
  /** The agent as a target expression sees it. */
  self: () => TargetSubject;
  /** How much a command may grow the agent's heap, in MB (commandMemoryMb); unset: no limit. */
  commandMemoryMb?: number;
  now?: () => number;
}

export class CommandRunner {
  private readonly now: () => number;

  constructor(private readonly deps: CommandRunnerDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Verifies commands with this keyring from now on (a keyring update). */
  trustKeyring(keyring: Keyring): void {
    this.deps.keyring = keyring;
  }

  decode(data: Uint8Array): CommandEnvelope {
    if (data.length > MAX_COMMAND_BYTES) {
      throw new DragnetError(
        Codes.TOO_LARGE,
        `command of ${data.length} bytes is over the ${MAX_COMMAND_BYTES}-byte limit`,
      );
    }
    try {
      return CommandEnvelope.decode(data);
    } catch (err) {
      throw new DragnetError(
        Codes.DECODE,
        `the command is not a valid CommandEnvelope: ${(err as Error).message}`,
      );
    }
  }

  /**
   * Decides whether to run a command. Synchronous on purpose: the replay
   * check and the record of the action id happen with nothing in between.
   */
  accept(envelope: CommandEnvelope): AcceptedCommand {
    // Not signed (the coordinator names commands), but it names files and journal lines: keep it plain.
    if (!COMMAND_ID_RE.test(envelope.commandId)) {
      throw new DragnetError(
        Codes.ACTION_INVALID,
        "the command id must be 1 to 64 letters, digits, '_' or '-'",
      );
    }
    let verified = verifySignedAction(envelope.action, this.deps.keyring);
    if (verified.body.schedule || envelope.run) verified = this.scheduledRun(verified, envelope);
    const body = verified.body;
    if (!isId(body.id)) throw new DragnetError(Codes.ACTION_INVALID, "the action id is not a Dragnet id");
    if (body.operations.length === 0)
      throw new DragnetError(Codes.ACTION_INVALID, "the action has no operation");
    try {
      checkValidityWindow(body, this.now(), this.deps.clockSkewMs);
    } catch (err) {
      throw withClockSkew(err, this.now() - Number(envelope.sentAtMs));
    }
    if (body.expiresAtMs - body.validFromMs > MAX_VALIDITY_MS) {
      throw new DragnetError(Codes.ACTION_INVALID, "the action stays valid for more than 30 days");
    }
    this.checkTarget(body.target);
    if (this.deps.replay.has(body.id)) {
      throw new DragnetError(
        Codes.REPLAY,
        envelope.run
          ? `run ${envelope.run} of schedule ${verified.schedule?.id} already ran on this agent; a run is never run twice`
          : `action ${body.id} already ran on this agent; it is never run twice`,
      );
    }
    const resolved = body.operations.map((op, i) => this.deps.modules.resolve(op, i));
    // The agent's own ACL decides, whatever the coordinator thought.
    this.deps.keyring.acl.enforce(body.operations.map(aclNameOf), verified.signers, verified.repeated);
    const operations = resolved.map(({ module, params }, i) => {
      try {
        module.check(params as never);
      } catch (err) {
        if (DragnetError.is(err)) throw err;
        throw new DragnetError(
          Codes.PARAMS,
          `operation ${i + 1} (${module.name}): ${(err as Error).message}`,
        );
      }
      return { module, params };
    });
    try {
      this.deps.replay.remember(body.id, body.expiresAtMs, envelope.commandId, coordinatorOf(envelope));
      if (verified.schedule) {
        this.deps.schedules?.runStarted(
          verified.schedule.id,
          envelope.run,
          this.now(),
          verified.schedule.expiresAtMs,
        );
      }
    } catch (err) {
      // Run at most once: an action whose id cannot be recorded is not run.
      throw new DragnetError(
        Codes.INTERNAL,
        `the agent cannot record the action id in its state directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}), so it does not run it: free space there`,
      );
    }
    return { commandId: envelope.commandId, coordinator: coordinatorOf(envelope), verified, operations };
  }

  /**
   * A schedule's run n: the signed schedule must be well formed and not stopped,
   * n one of its runs, and run n's window now. What runs is the action derived
   * from the signed bytes and n (its id keys the replay guard: run n runs once).
   */
  private scheduledRun(verified: VerifiedAction, envelope: CommandEnvelope): VerifiedAction {
    const schedule = verified.body;
    if (!schedule.schedule) {
      throw new DragnetError(Codes.ACTION_INVALID, "a run number comes only with a signed schedule");
    }
    if (!envelope.run) {
      throw new DragnetError(Codes.ACTION_INVALID, `schedule ${schedule.id} runs only as numbered runs`);
    }
    checkSchedule(schedule);
    const stop = this.deps.schedules?.stopOf(schedule.id);
    if (stop) {
      throw new DragnetError(
        Codes.SCHEDULE,
        `schedule ${schedule.id} was stopped by ${stop.by} at ${new Date(stop.atMs).toISOString()}${stop.reason ? ` (${stop.reason})` : ""}: its runs are refused`,
      );
    }
    const body = runBody(schedule, envelope.run);
    // Clocks differ, but by less than a quarter interval here: more tolerance would let a run
    // start inside its neighbour's window, and the schedule run more often than signed.
    const tolerance = Math.min(this.deps.clockSkewMs, Math.floor(schedule.schedule.everyMs / 4));
    try {
      checkRunWindow(schedule, envelope.run, this.now(), tolerance);
    } catch (err) {
      throw withClockSkew(err, this.now() - Number(envelope.sentAtMs));
    }
    // Runs go forward, at most one per half interval: windows' tolerances overlap at their edges,
    // and two runs must not be started there back to back.
    const last = this.deps.schedules?.lastStart(schedule.id);
    if (last && envelope.run <= last.run) {
      throw new DragnetError(
        Codes.REPLAY,
        `run ${envelope.run} of schedule ${schedule.id}: run ${last.run} already ran on this agent; runs only go forward`,
      );
    }
    if (last && this.now() - last.atMs < schedule.schedule.everyMs / 2) {
      throw new DragnetError(
        Codes.SCHEDULE,
        `run ${envelope.run} of schedule ${schedule.id} comes ${this.now() - last.atMs} ms after run ${last.run} started; runs start at least half an interval apart`,
      );
    }
    return { ...verified, body, schedule };
  }

  /** An investigator stopped a schedule: its runs are refused from now on (false: known already). */
  acceptStop(stop: SignedScheduleStop | undefined): { scheduleId: string; by: string; fresh: boolean } {
    const { body, signer } = verifyScheduleStop(stop, this.deps.keyring);
    if (!isId(body.scheduleId)) throw new DragnetError(Codes.ACTION_INVALID, "the stop names no schedule id");
    const now = this.now();
    // Kept until the schedule ends; a stop claiming to matter for longer than a schedule can is cut
    // (one starting 30 days from its creation, lasting 30 days).
    const untilMs = Math.min(body.untilMs, now + MAX_SCHEDULE_LEAD_MS + MAX_SCHEDULE_MS);
    const fresh =
      this.deps.schedules?.addStop(
        body.scheduleId,
        { untilMs, atMs: body.stoppedAtMs, by: signer.name, reason: body.reason.slice(0, 200) },
        now,
      ) ?? false;
    return { scheduleId: body.scheduleId, by: signer.name, fresh };
  }

  /**
   * A compromised coordinator must not widen an action: the agent evaluates the
   * signed target against itself and refuses what certainly excludes it
   * (coordinator-only attributes such as matched() count as unknown).
   */
  private checkTarget(target: string): void {
    let expr: TargetExpr;
    try {
      expr = parseTarget(target);
    } catch (err) {
      throw new DragnetError(Codes.TARGET_PARSE, (err as Error).message);
    }
    const self = this.deps.self();
    if (!targetMayInclude(expr, self)) {
      throw new DragnetError(
        Codes.TARGET_MISMATCH,
        `the action's target ${JSON.stringify(target.slice(0, 200))} does not select this agent (${self.hostname}, ${self.id})`,
      );
    }
  }

  /**
   * Modules that work on the agent's main thread (drift, process, memory) share its heap:
   * a command that grows it by more than commandMemoryMb is aborted — they stop at their
   * next time slice — so that one command cannot take the agent down. File searches run
   * in worker threads with a hard limit of their own.
   */
  private guardHeap(controller: AbortController): NodeJS.Timeout | undefined {
    const mb = this.deps.commandMemoryMb;
    if (!mb) return undefined;
    const limit = mb * 1048576;
    const atStart = getHeapStatistics().used_heap_size;
    let lastGc = 0;
    const guard = setInterval(() => {
      if (getHeapStatistics().used_heap_size - atStart <= limit) return;
      // Over by the count of what is in the heap, garbage included: collect, then judge what lives.
      if (performance.now() - lastGc < 1000) return;
      lastGc = performance.now();
      collectGarbage();
      if (getHeapStatistics().used_heap_size - atStart <= limit) return;
      controller.abort(
        new DragnetError(
          Codes.TOO_LARGE,
          `the command grew the agent's memory by more than ${mb} MB (commandMemoryMb) and was stopped`,
        ),
      );
    }, HEAP_CHECK_MS);
    guard.unref();
    return guard;
  }

  async execute(command: AcceptedCommand, stop?: AbortSignal): Promise<CommandResult> {
    const body = command.verified.body;
    const startedAtMs = this.now();
    const timeoutMs = Math.min(body.timeoutMs || DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS);
    const controller = new AbortController();
    const timer = setTimeout(
      () =>
        controller.abort(
          new DragnetError(Codes.TIMEOUT, `the operations did not finish within ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    const onStop = () => controller.abort(new DragnetError(Codes.AGENT_LOST, "the agent is stopping"));
    stop?.addEventListener("abort", onStop);
    const heapGuard = this.guardHeap(controller);
    const operations: OperationResult[] = [];
    let status = CommandStatus.COMMAND_STATUS_SUCCESS;
    let problem: CommandResult["problem"];
    try {
      for (const [i, op] of command.operations.entries()) {
        const opStarted = this.now();
        try {
          const outcome = await untilAborted(
            op.module.run(op.params as never, {
              signal: controller.signal,
              log: this.deps.log.child({ module: op.module.name, action: body.id }),
              stateDir: this.deps.stateDir,
              actionId: body.id,
              protectedPaths: this.deps.protectedPaths,
              ask:
                this.deps.ask &&
                ((topic, payload, ms) => this.deps.ask!(command.coordinator, topic, payload, ms)),
              service: this.deps.modules.serviceOf(op.module.name),
            }),
            controller.signal,
          );
          operations.push({
            found: outcome.found,
            problem: undefined,
            truncated: false,
            omitted: 0,
            durationMs: this.now() - opStarted,
            module: resultCase(op.module.name, outcome.result as never),
          });
        } catch (err) {
          if (controller.signal.aborted) {
            const reason = controller.signal.reason as DragnetError;
            status =
              reason.code === Codes.TIMEOUT
                ? CommandStatus.COMMAND_STATUS_TIMEOUT
                : CommandStatus.COMMAND_STATUS_FAILED;
            problem = reason.toProblem();
            operations.push({
              found: false,
              problem,
              durationMs: this.now() - opStarted,
              module: undefined,
              truncated: false,
              omitted: 0,
            });
            break;
          }
          const p = problemOf(err, Codes.MODULE_FAILED);
          operations.push({
            found: false,
            problem: p,
            durationMs: this.now() - opStarted,
            module: undefined,
            truncated: false,
            omitted: 0,
          });
          status = CommandStatus.COMMAND_STATUS_FAILED;
          problem ??= { code: p.code, message: `operation ${i + 1} (${op.module.name}): ${p.message}` };
        }
      }
    } finally {
      clearTimeout(timer);
      clearInterval(heapGuard);
      stop?.removeEventListener("abort", onStop);
    }
    return {
      commandId: command.commandId,
      actionId: body.id,
      agentId: this.deps.agentId,
      status,
      problem,
      operations,
      found: operations.some((o) => o.found),
      startedAtMs,
      finishedAtMs: this.now(),
    };
  }
}

/** How often a running command's heap growth is looked at. */
const HEAP_CHECK_MS = 200;

let gc: (() => void) | undefined;
/** A full collection, only when a command seems over its memory: V8 exposes it on request. */
function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString("--expose-gc");
    gc = runInNewContext("gc") as () => void;
  }
  gc();
}

/** Settles with the promise, or rejects as soon as the signal aborts (a module that ignores it cannot hang a command). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Past this, a command's send time and the agent's clock disagree by more than delivery explains. */
const CLOCK_SKEW_NOTICE_MS = 30_000;

/**
 * A window refusal on a host whose clock is off: says so, since the action is
 * fine and the clock is what needs fixing. `skewMs` is the agent's clock minus
 * the coordinator's, from the command's send time.
 */
function withClockSkew(err: unknown, skewMs: number): unknown {
  if (!DragnetError.is(err) || !Number.isFinite(skewMs) || Math.abs(skewMs) < CLOCK_SKEW_NOTICE_MS)
    return err;
  if (err.code !== Codes.EXPIRED && err.code !== Codes.NOT_YET_VALID) return err;
  const way = skewMs > 0 ? "ahead of" : "behind";
  return new DragnetError(
    err.code,
    `${err.message}; clock skew: this host's clock is ${formatDuration(Math.abs(skewMs))} ${way} the coordinator's — correct it (NTP)`,
  );
}
