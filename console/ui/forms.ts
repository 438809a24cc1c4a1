import { Command, CommanderError, type Option } from "commander";
import { Codes, DragnetError } from "../../common/mod.js";
import type { ActionBody } from "../../proto/api.js";
import { collect } from "../cli-kit.js";
import type { CoordinatorApi } from "../client.js";
import type { GlobalOptions } from "../home.js";
import { consoleModules } from "../modules/modules.gen.js";
import { actionBodyOf, type SendAction } from "../send.js";
import type { Form, FormField } from "./wire.js";

// The web console's forms are the CLI's commands: each form is drawn from a
// command's own options (names, help, repeatable or not), and what a form
// sends is parsed by that very command, with its parsers and checks, so the
// page can neither offer less than the CLI nor skip one of its checks. Where
// the CLI would sign and submit, the form's run stops at the action it would
// sign: the server shows it, and signs only once the investigator confirms.

/** The commands the page has forms for: sweeps first, then response. */
export const FORM_COMMANDS = [
  "file",
  "process",
  "netstat",
  "memory",
  "drift baseline",
  "drift check",
  "drift watch start",
  "isolate",
  "unisolate",
  "kill",
  "quarantine add",
  "quarantine list",
  "quarantine restore",
  "collect",
] as const;

/** How the CLI waits and prints: the page follows the action on its own page instead. */
const NOT_IN_FORMS = new Set([
  "--no-wait",
  "--wait-offline",
  "--deadline",
  "--quiet",
  "--stack",
  "--list",
  // Reads a file on this machine: a page must not make the console read files.
  "--searches",
]);

/** A fresh program with every module's commands (commander keeps parsed values on its commands: one per run). */
function moduleProgram(send: SendAction, errors: string[]): Command {
  const program = new Command("dragnet")
    // Before the commands are added: they copy both settings.
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: (text) => errors.push(text) })
    .option("--home <dir>")
    .option("--key <file>")
    .option("--coordinator <host:port>")
    .option("--ca <file>");
  const agents = program.command("agents");
  for (const module of Object.values(consoleModules)) module.register({ program, agents, send });
  return program;
}

function commandOf(program: Command, name: string): Command | undefined {
  let cmd: Command | undefined = program;
  for (const part of name.split(" ")) cmd = cmd?.commands.find((c) => c.name() === part);
  return cmd;
}

function fieldOf(option: Option): FormField {
  const takesValue = option.required || option.optional;
  return {
    flag: option.long ?? option.short ?? option.flags,
    help: option.description,
    kind: !takesValue ? "switch" : option.parseArg === collect ? "list" : "value",
    placeholder: /<([^>]+)>/.exec(option.flags)?.[1] ?? "",
    required: option.mandatory,
    ...(typeof option.defaultValue === "string" ? { default: option.defaultValue } : {}),
  };
}

/** Every form, from the commands themselves. */
export function describeForms(): Form[] {
  const program = moduleProgram(async () => 0, []);
  return FORM_COMMANDS.map((name) => {
    const cmd = commandOf(program, name)!;
    const fields = cmd.options
      .filter((o) => !o.negate && !NOT_IN_FORMS.has(o.long ?? ""))
      .map(fieldOf)
      // The target first: every form starts with where it runs.
      .sort((a, b) => Number(b.flag === "--target") - Number(a.flag === "--target"));
    return { command: name, help: cmd.description(), fields };
  });
}

export interface FormRequest {
  command: string;
  /** By flag: true for a switch, text for a value, lines for a list. */
  values: Record<string, unknown>;
}

/** A form's values as the command's arguments (--flag=value, so no value is ever read as a flag). */
function argvOf(cmd: Command, name: string, values: Record<string, unknown>): string[] {
  const argv: string[] = [];
  for (const [flag, value] of Object.entries(values)) {
    const option = cmd.options.find((o) => o.long === flag);
    if (!option || option.negate || NOT_IN_FORMS.has(flag))
      throw new DragnetError(Codes.PARAMS, `${flag.slice(0, 60)} is not an option of dragnet ${name}`);
    if (value === false || value === undefined || value === null || value === "") continue;
    const field = fieldOf(option);
    if (field.kind === "switch") {
      if (value !== true) throw new DragnetError(Codes.PARAMS, `${flag} is a switch: true or false`);
      argv.push(flag);
      continue;
    }
    if (typeof value !== "string") throw new DragnetError(Codes.PARAMS, `${flag} takes text`);
    // As typed: a space in a searched string or regex is part of it. Only blank lines are dropped.
    const items = field.kind === "list" ? value.split(/\r?\n/) : [value];
    for (const item of items) if (item.trim()) argv.push(`${flag}=${item}`);
  }
  return argv;
}

/** The CLI's command line for a form (what the page shows, and a person could type). */
export function commandLine(request: FormRequest, argv: string[]): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ["dragnet", ...request.command.split(" "), ...argv].map(quote).join(" ");
}

/**
 * Runs a form through its command, up to the action it would sign. Throws a
 * DragnetError with the command's own words for anything it refuses.
 */
export async function actionFromForm(
  api: CoordinatorApi,
  globals: GlobalOptions,
  request: FormRequest,
): Promise<{ body: ActionBody; commandLine: string }> {
  if (!(FORM_COMMANDS as readonly string[]).includes(request.command))
    throw new DragnetError(Codes.PARAMS, `there is no form for "${String(request.command).slice(0, 60)}"`);
  if (typeof request.values !== "object" || request.values === null)
    throw new DragnetError(Codes.PARAMS, "a form's values are an object by flag");
  let body: ActionBody | undefined;
  const errors: string[] = [];
  const program = moduleProgram(async (_command, flags, defaultName, operations, extra = {}) => {
    body = await actionBodyOf(api, globals, flags, defaultName, operations, extra.options);
    return 0;
  }, errors);
  const argv = argvOf(commandOf(program, request.command)!, request.command, request.values);
  const globalArgv = Object.entries({
    "--home": globals.home,
    "--key": globals.key,
    "--coordinator": globals.coordinator,
    "--ca": globals.ca,
  }).flatMap(([flag, value]) => (value ? [`${flag}=${value}`] : []));
  // The commands set the exit status of the process they run in: not this one's.
  const exitCode = process.exitCode;
  try {
    await program.parseAsync([...globalArgv, ...request.command.split(" "), ...argv], { from: "user" });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
  } finally {
    process.exitCode = exitCode;
  }
  if (!body) {
    const said = errors
      .join("")
      .replace(/^dragnet: /, "")
      .replace(/^error: /, "")
      .trim();
    throw new DragnetError(Codes.PARAMS, said || `dragnet ${request.command} made no action`);
  }
  return { body, commandLine: commandLine(request, argv) };
}
