import { readFileSync, statSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { Codes, DragnetError, describeError, parseDuration } from "../common/mod.js";
import { type ActionOptions, DEFAULT_EXPIRES, DEFAULT_TIMEOUT } from "./action-builder.js";
import type { CoordinatorApi } from "./client.js";
import { type GlobalOptions, openClient } from "./home.js";
import { EXIT_ERROR } from "./sweep.js";

// Small helpers shared by the console's commands: typed flag parsers, the
// flags every action-sending command takes, and one error path (message on
// stderr, exit status 2).

export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Action and search files are kilobytes: past this a file is not one (and /dev/zero would never end). */
const MAX_INPUT_FILE = 1024 * 1024;

/** A small regular file's text; throws saying why it is not one. */
export function readSmallFile(path: string): string {
  const st = statSync(path);
  if (!st.isFile()) throw new Error("not a regular file");
  if (st.size > MAX_INPUT_FILE) throw new Error(`${st.size} bytes, over the limit of ${MAX_INPUT_FILE}`);
  return readFileSync(path, "utf8");
}

/** Refuses what the investigator asked for, saying what was wrong (exit status 2). */
export function paramsError(message: string): never {
  throw new DragnetError(Codes.PARAMS, message);
}

export function nonNegativeInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) {
      throw new InvalidArgumentError(`${flag} takes a whole number ≥ 0, not "${value}"`);
    }
    return n;
  };
}

/** A whole number that fits the wire's uint32 (pids, ports, counts). */
export function uint32(flag: string, max = 0xffffffff) {
  const parse = nonNegativeInt(flag);
  return (value: string): number => {
    const n = parse(value);
    if (n > max) throw new InvalidArgumentError(`${flag} takes a whole number up to ${max}, not "${value}"`);
    return n;
  };
}

/** A duration flag ("30s", "5m"), in milliseconds. */
export function duration(flag: string) {
  return (value: string): number => {
    try {
      return parseDuration(value);
    } catch {
      throw new InvalidArgumentError(`${flag} takes a duration (30s, 5m, 2h), not "${value}"`);
    }
  };
}

/** An ISO time, or a duration meaning that long ago ("2h"); undefined when not given. */
export function instantOf(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const iso = Date.parse(value);
  if (!Number.isNaN(iso) && /\d{4}-\d{2}-\d{2}/.test(value)) return iso;
  try {
    return Date.now() - parseDuration(value);
  } catch {
    throw new DragnetError(
      Codes.PARAMS,
      `${flag} takes an ISO time (2026-11-24T10:00:00Z) or a duration ago (2h, 3d), not "${value}"`,
    );
  }
}

export interface SweepFlags {
  target: string;
  expires: string;
  timeout: string;
  actionName?: string;
  description?: string;
  wait: boolean;
  waitOffline?: boolean;
  deadline?: number;
  quiet?: boolean;
  incident?: string;
}

/** Flags of every command that sends an action to agents. */
export function addActionFlags(cmd: Command, options: { targetRequired?: boolean } = {}): Command {
  const target = new Option(
    "-t, --target <expr>",
    'which agents (target expression, e.g. all, os == "linux", tags.env == "prod")',
  );
  // A command with subcommands (`file help`) checks -t itself: commander would demand it of them too.
  if (options.targetRequired !== false) target.makeOptionMandatory();
  return cmd
    .addOption(target)
    .option("--expires <duration>", "how long agents may receive the action", DEFAULT_EXPIRES)
    .option("--timeout <duration>", "how long each agent may run it", DEFAULT_TIMEOUT)
    .option("--action-name <name>", "a name for the action (shown in action list)")
    .addOption(new Option("--description <text>", "why this action is run").hideHelp())
    .option("--no-wait", "print the action id and return without waiting for results")
    .option("--wait-offline", "keep waiting for offline agents until the action expires")
    .option(
      "--deadline <duration>",
      "stop waiting after this long, whoever has not answered (the action goes on: dragnet action follow ID)",
      duration("--deadline"),
    )
    .option(
      "--incident <id>",
      "the incident this action belongs to (default: dragnet incident use); its notebook records it",
    )
    .option("-q, --quiet", "no progress, summary or per-agent problems on stderr");
}

export function actionOptionsOf(flags: SweepFlags): ActionOptions {
  return {
    target: flags.target,
    expires: flags.expires,
    timeout: flags.timeout,
    name: flags.actionName,
    description: flags.description,
  };
}

export function globalsOf(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

/**
 * What a command did, on standard output: with --json one JSON object on a
 * line (what scripts read), otherwise the sentence for people.
 */
export function outcome(command: Command, json: Record<string, unknown>, text: string): void {
  process.stdout.write(globalsOf(command).json ? `${JSON.stringify(json)}\n` : `${text}\n`);
}

/** Opens the coordinator API for one command body, and closes it however the body ends. */
export async function withApi<T>(command: Command, body: (api: CoordinatorApi) => Promise<T>): Promise<T> {
  const api = await openClient(globalsOf(command));
  try {
    return await body(api);
  } finally {
    api.close();
  }
}

/** Runs a command body; DragnetErrors become one line on stderr and exit status 2. */
export function handle<A extends unknown[]>(fn: (...args: A) => Promise<number | undefined>) {
  return async (...args: A): Promise<void> => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (err) {
      // Through the command's output (stderr, unless a program that runs commands
      // for someone else, `dragnet ui`'s, takes the message to show it).
      const command = args.at(-1);
      const writeErr = command instanceof Command ? command.configureOutput().writeErr : undefined;
      (writeErr ?? ((s: string) => process.stderr.write(s)))(`dragnet: ${describeError(err)}\n`);
      process.exitCode = EXIT_ERROR;
    }
  };
}
