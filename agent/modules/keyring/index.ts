import { copyFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { sha256Hex } from "../../../common/journal.js";
import { Codes, DragnetError, Keyring, writeFileAtomic } from "../../../common/mod.js";
import type { KeyringResult } from "../../../proto/mod.js";
import { defineModule, type ModuleHost, type ModuleService } from "../registry.js";
import { checkKeyring } from "./check.js";

// `keyring`: the investigators this agent trusts, changed while it runs. The
// new keyring must parse and must still let its administrators sign the next
// change (no update may lock the fleet out of updates); the file it replaces
// is kept beside it (KEYRING.previous) for a rollback. The agent trusts the
// new keyring from its next command on — this one was verified with the old.

export class KeyringService implements ModuleService {
  constructor(private readonly host: ModuleHost) {}

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  private get file(): string {
    const file = this.host.keyringFile;
    if (!file) throw new DragnetError(Codes.MODULE_FAILED, "keyring: this agent has no keyring file");
    return file;
  }

  private get previous(): string {
    return `${this.file}.previous`;
  }

  show(mode = "show"): KeyringResult {
    const bytes = readFileSync(this.file);
    const ring = Keyring.fromJson(JSON.parse(bytes.toString("utf8")), this.file);
    return {
      mode,
      sha256: sha256Hex(bytes),
      investigators: ring.entries().map((i) => ({
        name: i.name,
        keyId: i.keyId,
        weight: i.weight,
        roles: [...i.roles].sort(),
      })),
      previousSha256: existsSync(this.previous) ? sha256Hex(readFileSync(this.previous)) : "",
      changedAtMs: Math.floor(statSync(this.file).mtimeMs),
    };
  }

  update(bytes: Uint8Array): KeyringResult {
    const ring = parseNewKeyring(bytes);
    copyFileSync(this.file, this.previous);
    this.install(bytes, ring);
    return this.show("update");
  }

  rollback(): KeyringResult {
    if (!existsSync(this.previous))
      throw new DragnetError(
        Codes.MODULE_FAILED,
        "keyring: no previous keyring is kept here to roll back to",
      );
    const bytes = readFileSync(this.previous);
    const ring = parseNewKeyring(bytes);
    const current = readFileSync(this.file);
    this.install(bytes, ring);
    // The keyring rolled back from is kept in its turn: a rollback can be undone.
    writeFileAtomic(this.previous, current, 0o644);
    return this.show("rollback");
  }

  private install(bytes: Uint8Array, ring: Keyring): void {
    // Readable by all, writable by its owner (the agent refuses a keyring others could change).
    writeFileAtomic(this.file, bytes, 0o644);
    this.host.trustKeyring(ring);
    this.host.log.warn("keyring changed: trusted from the next command on", {
      investigators: ring.entries().map((i) => i.name),
    });
  }
}

/** A keyring sent to replace this one, refused unless it parses and its administrators can still sign a change. */
function parseNewKeyring(bytes: Uint8Array): Keyring {
  let ring: Keyring;
  try {
    ring = Keyring.fromJson(JSON.parse(Buffer.from(bytes).toString("utf8")), "the new keyring");
  } catch (err) {
    throw new DragnetError(Codes.PARAMS, `keyring: ${(err as Error).message}`);
  }
  const admins = ring.entries().filter((i) => i.roles.has("admin"));
  const reach = ring.acl.weigh("keyring", admins);
  if (reach.weight < reach.required) {
    throw new DragnetError(
      Codes.PARAMS,
      `keyring: with it, its administrators (${admins.map((a) => a.name).join(", ") || "none"}) together carry weight ${reach.weight} and a keyring change needs ${reach.required}: nobody could change it again`,
    );
  }
  return ring;
}

export const keyringModule = defineModule<"keyring", KeyringService>({
  name: "keyring",
  check: checkKeyring,
  service: (host) => new KeyringService(host),
  async run(p, ctx) {
    const service = ctx.service;
    if (!service) throw new DragnetError(Codes.MODULE_FAILED, "keyring: this agent runs no keyring service");
    if (p.mode === "update") return { found: true, result: service.update(p.keyring) };
    if (p.mode === "rollback") return { found: true, result: service.rollback() };
    return { found: true, result: service.show() };
  },
});
