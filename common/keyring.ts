import { readFileSync } from "node:fs";
import { Acl, type AclRule } from "./acl.js";
import { Codes, DragnetError } from "./errors.js";
import {
  checkInvestigatorName,
  DEFAULT_ROLES,
  keyIdOf,
  publicKeyFromRaw,
  ROLES,
  type Role,
  type TrustedInvestigator,
} from "./keys.js";

// A keyring is the set of investigators a verifier trusts. Agents load theirs
// from their own local configuration; the coordinator has its own copy only to
// refuse early and explain why.

export interface KeyringEntryJson {
  name: string;
  keyId?: string;
  publicKey: string;
  weight?: number;
  /** What the investigator may do (DEFAULT_ROLES when absent). */
  roles?: Role[];
}

export interface KeyringJson {
  investigators: KeyringEntryJson[];
  acl?: Record<string, AclRule>;
}

export class Keyring {
  private readonly byId = new Map<string, TrustedInvestigator>();
  /** Who may run which module (the keyring file's "acl"; defaults when absent). */
  acl: Acl = Acl.defaults();

  constructor(entries: Iterable<TrustedInvestigator> = []) {
    for (const entry of entries) this.add(entry);
  }

  add(entry: TrustedInvestigator): void {
    if (this.byId.has(entry.keyId)) {
      throw new DragnetError(Codes.CONFIG, `key id ${entry.keyId} appears twice in the keyring`);
    }
    this.byId.set(entry.keyId, entry);
  }

  get(keyId: string): TrustedInvestigator | undefined {
    return this.byId.get(keyId);
  }

  get size(): number {
    return this.byId.size;
  }

  entries(): TrustedInvestigator[] {
    return [...this.byId.values()];
  }

  static fromJson(json: unknown, source = "keyring"): Keyring {
    const investigators = (json as KeyringJson | undefined)?.investigators;
    if (!Array.isArray(investigators)) {
      throw new DragnetError(Codes.CONFIG, `${source}: expected {"investigators": [...]}`);
    }
    const ring = new Keyring();
    investigators.forEach((raw, i) => {
      const where = `${source}: investigators[${i}]`;
      if (typeof raw !== "object" || raw === null)
        throw new DragnetError(Codes.CONFIG, `${where} is not an object`);
      const { name, publicKey, keyId, weight = 1, roles = DEFAULT_ROLES } = raw as KeyringEntryJson;
      if (typeof name !== "string") throw new DragnetError(Codes.CONFIG, `${where}.name is missing`);
      checkInvestigatorName(name);
      if (typeof publicKey !== "string")
        throw new DragnetError(Codes.CONFIG, `${where}.publicKey is missing`);
      const publicKeyRaw = Buffer.from(publicKey, "base64");
      let key: ReturnType<typeof publicKeyFromRaw>;
      try {
        key = publicKeyFromRaw(publicKeyRaw);
      } catch (err) {
        throw new DragnetError(Codes.CONFIG, `${where}.publicKey: ${(err as Error).message}`);
      }
      const computed = keyIdOf(publicKeyRaw);
      if (keyId !== undefined && keyId !== computed) {
        throw new DragnetError(
          Codes.CONFIG,
          `${where}: keyId ${keyId} does not match its public key (${computed})`,
        );
      }
      if (!Number.isInteger(weight) || weight < 0 || weight > 1000) {
        throw new DragnetError(Codes.CONFIG, `${where}.weight must be an integer from 0 to 1000`);
      }
      if (!Array.isArray(roles) || roles.some((r) => !ROLES.includes(r as Role))) {
        throw new DragnetError(Codes.CONFIG, `${where}.roles must be a list of: ${ROLES.join(", ")}`);
      }
      if (ring.entries().some((e) => e.name === name)) {
        throw new DragnetError(Codes.CONFIG, `${where}: the name "${name}" appears twice`);
      }
      ring.add({ name, keyId: computed, publicKeyRaw, publicKey: key, weight, roles: new Set(roles) });
    });
    ring.acl = Acl.fromJson(
      (json as KeyringJson).acl,
      new Set(ring.entries().map((e) => e.name)),
      `${source}: acl`,
    );
    return ring;
  }

  static load(path: string): Keyring {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      throw new DragnetError(Codes.CONFIG, `cannot read keyring ${path}: ${(err as Error).message}`);
    }
    return Keyring.fromJson(json, path);
  }
}
