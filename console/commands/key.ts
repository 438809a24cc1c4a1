import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import {
  Acl,
  Codes,
  DragnetError,
  generateInvestigatorKey,
  Keyring,
  publicEntryOf,
  ROLES,
  saveInvestigatorKey,
  writeFileAtomic,
} from "../../common/mod.js";
import { collect, globalsOf, handle, outcome } from "../cli-kit.js";
import { homeDir } from "../home.js";

// `dragnet key generate`: an investigator's Ed25519 key pair. The private key
// stays in a 0600 file on the investigator's machine; the .pub file is what an
// admin adds to agents' keyrings. `dragnet key keyring` assembles those into
// the keyring agents and the coordinator install, with Dragnet's default ACL.

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
        outcome(
          command,
          { keyId: k.keyId, name: k.name, privateKey: out, publicKey: pubPath, keyringEntry: entry },
          `key id ${k.keyId} for ${k.name}\nprivate key: ${out} (keep it; mode 0600)\npublic key:  ${pubPath}\n` +
            `keyring entry for agents and the coordinator:\n${JSON.stringify(entry)}`,
        );
        return 0;
      }),
    );

  key
    .command("keyring <pub...>")
    .description(
      "print a keyring for agents and the coordinator from investigators' .pub files, with the default ACL",
    )
    .option("--weight <name=n>", "an investigator's weight (default 1; repeatable)", collect, [])
    .option(
      "--roles <name=role,...>",
      `an investigator's roles, of ${ROLES.join(", ")} (default: all but admin; repeatable)`,
      collect,
      [],
    )
    .action(
      handle(async (pubs: string[], flags: { weight: string[]; roles: string[] }) => {
        const weights = new Map<string, number>();
        for (const w of flags.weight) {
          const m = /^([^=]+)=(\d+)$/.exec(w);
          if (!m) throw new DragnetError(Codes.PARAMS, `--weight takes name=N, not "${w}"`);
          weights.set(m[1]!, Number(m[2]));
        }
        const roles = new Map<string, string[]>();
        for (const r of flags.roles) {
          const m = /^([^=]+)=([a-z,]+)$/.exec(r);
          if (!m) throw new DragnetError(Codes.PARAMS, `--roles takes name=role,role, not "${r}"`);
          roles.set(m[1]!, m[2]!.split(",").filter(Boolean));
        }
        const investigators = pubs.map((path) => {
          let entry: Record<string, unknown>;
          try {
            entry = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
          } catch (err) {
            throw new DragnetError(Codes.CONFIG, `cannot read ${path}: ${(err as Error).message}`);
          }
          const name = String(entry.name);
          return {
            ...entry,
            name,
            weight: weights.get(name) ?? entry.weight ?? 1,
            ...(roles.has(name) ? { roles: roles.get(name) } : {}),
          };
        });
        for (const name of [...weights.keys(), ...roles.keys()]) {
          if (!investigators.some((i) => i.name === name))
            throw new DragnetError(
              Codes.PARAMS,
              `${name} is named by a flag but is not among the .pub files`,
            );
        }
        const json = { investigators, acl: Acl.defaults().toJson() };
        Keyring.fromJson(json, "the keyring"); // refuses duplicates and bad keys now, not on the endpoints
        process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
        return 0;
      }),
    );
}
