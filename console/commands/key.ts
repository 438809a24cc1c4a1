import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import {
  Codes,
  DragnetError,
  generateInvestigatorKey,
  publicEntryOf,
  saveInvestigatorKey,
  writeFileAtomic,
} from "../../common/mod.js";
import { globalsOf, handle } from "../cli-kit.js";
import { homeDir } from "../home.js";

// `dragnet key generate`: an investigator's Ed25519 key pair. The private key
// stays in a 0600 file on the investigator's machine; the .pub file is what an
// admin adds to agents' keyrings.

export function registerKeyCommand(program: Command): void {
  const key = program.command("key").description("investigator keys");
  key
    .command("generate")
    .description("create an investigator key pair (private key file mode 0600, plus NAME.pub)")
    .requiredOption("--name <name>", "the investigator's name (letters, digits, . _ @ -)")
    .option("--out <file>", "private key file (default HOME/NAME.key)")
    .option("--force", "overwrite an existing key file")
    .action(
      handle(async (flags: { name: string; out?: string; force?: boolean }, command: Command) => {
        const out = resolve(flags.out ?? join(homeDir(globalsOf(command)), `${flags.name}.key`));
        if (existsSync(out) && !flags.force) {
          throw new DragnetError(
            Codes.CONFIG,
            `${out} exists; use --force to replace it (the old key is lost)`,
          );
        }
        mkdirSync(dirname(out), { recursive: true, mode: 0o700 });
        const k = generateInvestigatorKey(flags.name);
        saveInvestigatorKey(out, k, process.env.DRAGNET_KEY_PASSPHRASE || undefined);
        const pubPath = `${out.replace(/\.key$/, "")}.pub`;
        const entry = publicEntryOf(k);
        writeFileAtomic(pubPath, `${JSON.stringify(entry, null, 2)}\n`, 0o644);
        process.stdout.write(
          `key id ${k.keyId} for ${k.name}\nprivate key: ${out} (keep it; mode 0600)\npublic key:  ${pubPath}\n` +
            `keyring entry for agents and the coordinator:\n${JSON.stringify(entry)}\n`,
        );
        return 0;
      }),
    );
}
