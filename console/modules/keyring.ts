import { readFileSync, statSync } from "node:fs";
import type { Command } from "commander";
import { Codes, DragnetError, Keyring } from "../../common/mod.js";
import type { KeyringResult } from "../../proto/api.js";
import { addActionFlags, handle, type SweepFlags } from "../cli-kit.js";
import type { ModuleFormatter } from "../output/formatters.js";
import type { SendAction } from "../send.js";
import { defineConsoleModule } from "./console-module.js";

// `dragnet keyring`: the investigators the agents trust, changed on a running
// fleet — push a new keyring (admins sign: two by default), show each agent's,
// roll back to the one the last push replaced. Revoking a stolen key is a push
// of the keyring without it.

const formatter: ModuleFormatter<KeyringResult> = {
  columns: [
    { key: "name", header: "investigator" },
    { key: "keyId", header: "key id" },
    { key: "weight", header: "weight" },
    { key: "roles", header: "roles", show: (v) => (v as string[]).join(",") },
    { key: "sha256", header: "keyring sha256" },
    { key: "previous", header: "previous kept" },
  ],
  rows: (r) =>
    r.investigators.map((i) => ({
      ...i,
      sha256: r.sha256.slice(0, 16),
      previous: r.previousSha256 ? r.previousSha256.slice(0, 16) : "",
      mode: r.mode,
    })),
};

const MAX_KEYRING_FILE = 256 * 1024;

/** The new keyring file, read and checked here as the agents will (a typo is refused before anyone signs). */
function readKeyringFile(file: string): Buffer {
  if (!statSync(file).isFile() || statSync(file).size > MAX_KEYRING_FILE)
    throw new DragnetError(Codes.PARAMS, `${file}: a keyring is a regular file of at most 256 KiB`);
  const bytes = readFileSync(file);
  try {
    Keyring.fromJson(JSON.parse(bytes.toString("utf8")), file);
  } catch (err) {
    throw new DragnetError(Codes.PARAMS, (err as Error).message);
  }
  return bytes;
}

function register(program: Command, send: SendAction): void {
  const keyring = program
    .command("keyring")
    .description("the investigators the agents trust: push a new keyring, show it, roll it back");
  const push = keyring
    .command("push")
    .description(
      "replace the agents' keyring (admins sign: two by default); each keeps the old one for a rollback and refuses one that would lock admins out",
    )
    .requiredOption("--file <keyring.json>", "the new keyring (dragnet key keyring prints one)");
  addActionFlags(push);
  push.action(
    handle(async (flags: SweepFlags & { file: string }, command: Command) =>
      send(command, flags, `keyring push ${flags.file}`, [
        { module: { $case: "keyring", value: { mode: "update", keyring: readKeyringFile(flags.file) } } },
      ]),
    ),
  );
  // show and rollback carry nothing but their mode.
  for (const [mode, description] of [
    ["show", "each agent's keyring: investigators, weights, roles, its hash (read-only: one signature)"],
    ["rollback", "go back to the keyring the last push replaced (admins sign)"],
  ] as const) {
    const sub = keyring.command(mode).description(description);
    addActionFlags(sub);
    sub.action(
      handle(async (flags: SweepFlags, command: Command) =>
        send(command, flags, `keyring ${mode}`, [
          { module: { $case: "keyring", value: { mode, keyring: Buffer.alloc(0) } } },
        ]),
      ),
    );
  }
}

export const keyringConsole = defineConsoleModule({
  name: "keyring",
  commands: ["keyring push", "keyring show", "keyring rollback"],
  register: ({ program, send }) => register(program, send),
  formatter,
});
