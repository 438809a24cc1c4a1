import {
  isResponseModule,
  MODULE_NAMES,
  needsTwoByDefault,
  type Operation,
  SENSITIVE_USES,
} from "../proto/mod.js";
import { Codes, DragnetError } from "./errors.js";
import type { Role, TrustedInvestigator } from "./keys.js";

// Who may run which module, enforced by each agent from its own local
// configuration (the coordinator applies the same rules only to refuse early
// and to hold actions for approval). A rule gives a module the total weight
// its distinct signers must reach, and optionally the only investigators
// whose signatures count for it.

/**
 * Modules that change the host (the kind on their Operation case, agent.proto).
 * Unless an ACL names them, they need two people.
 */
export const RESPONSE_MODULES: ReadonlySet<string> = new Set(MODULE_NAMES.filter(isResponseModule));
/** Response modules, and sensitive ones (process memory): unless an ACL names them, they need two people. */
export const TWO_PERSON_MODULES: ReadonlySet<string> = new Set(MODULE_NAMES.filter(needsTwoByDefault));
export const RESPONSE_MIN_WEIGHT = 2;

/**
 * The name an operation is weighed under in the ACL: its module's, except for
 * a read-only use of a response module — listing the quarantine vault changes
 * nothing, so it is `quarantine_list`, an investigation (one signature by
 * default; a keyring may give it a rule of its own).
 */
export function aclNameOf(op: Operation): string {
  if (!op.module) return "unknown";
  if (op.module.$case === "quarantine" && op.module.value.mode === "list") return "quarantine_list";
  if (op.module.$case === "keyring" && op.module.value.mode === "show") return "keyring_show";
  // Scanning process memory is sensitive (as `memory` is); scanning files is an investigation.
  if (op.module.$case === "yara" && op.module.value.processes) return "yara_memory";
  return op.module.$case;
}

/** The role that may sign a module's operations: `respond` for a response module, else `investigate`. */
export function roleToSign(module: string): Role {
  // Who may act on the fleet is decided by its administrators.
  if (module === "keyring") return "admin";
  return isResponseModule(module) ? "respond" : "investigate";
}

export interface AclRule {
  minWeight: number;
  investigators?: string[];
}

export interface WeightCheck {
  module: string;
  required: number;
  weight: number;
  /** Signers whose weight counted for this module. */
  counted: string[];
}

export class Acl {
  private readonly rules: ReadonlyMap<string, AclRule>;

  constructor(rules: Record<string, AclRule> = {}) {
    this.rules = new Map(Object.entries(rules));
  }

  /** The rule for a module: its own, else the default (never below two people for response modules). */
  ruleFor(module: string): AclRule {
    const own = this.rules.get(module);
    if (own) return own;
    const fallback = this.rules.get("default") ?? { minWeight: 1 };
    if (needsTwoByDefault(module)) {
      return { ...fallback, minWeight: Math.max(fallback.minWeight, RESPONSE_MIN_WEIGHT) };
    }
    return fallback;
  }

  /** How much weight the signers carry for a module, and how much it needs. */
  /**
   * How much weight the signers (in signing order) carry for a module. A
   * signature counts when its signer holds the module's role (`respond` for a
   * response module, else `investigate`) — or, for a co-signer (not the
   * first), the `approve` role.
   */
  weigh(module: string, signers: readonly TrustedInvestigator[]): WeightCheck {
    const rule = this.ruleFor(module);
    const allowed = rule.investigators ? new Set(rule.investigators) : undefined;
    const role = roleToSign(module);
    const seen = new Set<string>();
    const counted: string[] = [];
    let weight = 0;
    for (const [i, s] of signers.entries()) {
      if (seen.has(s.keyId)) continue; // one key counts once
      seen.add(s.keyId);
      if (allowed && !allowed.has(s.name)) continue;
      // A co-signer with the approve role counts, except for administration: that takes admins.
      if (!s.roles.has(role) && !(i > 0 && role !== "admin" && s.roles.has("approve"))) continue;
      weight += s.weight;
      counted.push(s.name);
    }
    return { module, required: rule.minWeight, weight, counted };
  }

  /** The weakest operation of an action: what it still needs, if anything. */
  shortfall(modules: readonly string[], signers: readonly TrustedInvestigator[]): WeightCheck | undefined {
    let worst: WeightCheck | undefined;
    for (const m of modules) {
      const check = this.weigh(m, signers);
      if (check.weight >= check.required) continue;
      if (!worst || check.required - check.weight > worst.required - worst.weight) worst = check;
    }
    return worst;
  }

  /**
   * Refuses unless every operation's module has the weight it needs.
   * `repeated` names investigators who signed more than once, to say why
   * their second signature did not count.
   */
  enforce(
    modules: readonly string[],
    signers: readonly TrustedInvestigator[],
    repeated: readonly string[] = [],
  ): void {
    for (const [i, m] of modules.entries()) {
      const check = this.weigh(m, signers);
      if (check.weight >= check.required) continue;
      const rule = this.ruleFor(m);
      const names = signers.map((s) => s.name).join(", ") || "nobody";
      if (rule.investigators && check.counted.length === 0) {
        throw new DragnetError(
          Codes.NOT_ALLOWED,
          `operation ${i + 1} (${m}) may only be signed by ${rule.investigators.join(", ")}; it was signed by ${names}`,
        );
      }
      const twice = repeated.length
        ? `; ${repeated.join(", ")} signed more than once, and the same investigator counts once`
        : "";
      const role = roleToSign(m);
      const roleless = signers.filter(
        (s, j) => !s.roles.has(role) && !(j > 0 && role !== "admin" && s.roles.has("approve")),
      );
      const roles = roleless.length
        ? `; ${roleless.map((s) => s.name).join(", ")} may not sign it (the ${role} role${role === "admin" ? "" : ", or approve for a co-signer"})`
        : "";
      throw new DragnetError(
        Codes.WEIGHT,
        `operation ${i + 1} (${m}) needs signatures of weight ${check.required}; it has ${check.weight} (${check.counted.join(", ") || names})${twice}${roles}`,
      );
    }
  }

  /** The rules as JSON (for the lab and install templates). */
  toJson(): Record<string, AclRule> {
    return Object.fromEntries(this.rules);
  }

  static defaults(): Acl {
    const rules: Record<string, AclRule> = { default: { minWeight: 1 } };
    for (const m of [...TWO_PERSON_MODULES, ...SENSITIVE_USES]) rules[m] = { minWeight: RESPONSE_MIN_WEIGHT };
    return new Acl(rules);
  }

  static fromJson(json: unknown, knownInvestigators: ReadonlySet<string>, source = "acl"): Acl {
    if (json === undefined) return Acl.defaults();
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new DragnetError(Codes.CONFIG, `${source}: expected an object of module rules`);
    }
    const rules: Record<string, AclRule> = {};
    for (const [module, raw] of Object.entries(json as Record<string, unknown>)) {
      const where = `${source}.${module}`;
      if (!/^[a-z][a-z0-9_]{0,31}$/.test(module))
        throw new DragnetError(Codes.CONFIG, `${where}: not a module name`);
      const r = raw as Partial<AclRule> | null;
      if (typeof r !== "object" || r === null)
        throw new DragnetError(Codes.CONFIG, `${where}: expected {"minWeight": N}`);
      if (!Number.isInteger(r.minWeight) || (r.minWeight as number) < 1 || (r.minWeight as number) > 1000) {
        throw new DragnetError(Codes.CONFIG, `${where}.minWeight must be an integer from 1 to 1000`);
      }
      if (r.investigators !== undefined) {
        if (!Array.isArray(r.investigators) || r.investigators.some((n) => typeof n !== "string")) {
          throw new DragnetError(Codes.CONFIG, `${where}.investigators must be a list of names`);
        }
        for (const n of r.investigators) {
          if (!knownInvestigators.has(n)) {
            throw new DragnetError(
              Codes.CONFIG,
              `${where}.investigators names "${n}", who is not in the keyring`,
            );
          }
        }
      }
      rules[module] = {
        minWeight: r.minWeight as number,
        ...(r.investigators ? { investigators: r.investigators } : {}),
      };
    }
    return new Acl(rules);
  }
}
