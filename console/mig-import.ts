import type { Operation } from "../proto/api.js";
import type { Notes } from "./mig-search.js";
import type { MigImport } from "./modules/console-module.js";
import { consoleModules } from "./modules/modules.gen.js";

// A MIG v2 action file (name, target, threat, description, operations)
// turned into what a Dragnet action needs. MIG's target is a SQL condition
// over its agent database: it is never evaluated here — the investigator gives
// a Dragnet target and the original is shown beside it. An operation whose
// module has no Dragnet counterpart is refused, with every such module named:
// an import that silently dropped one would answer a different question.

export class MigImportError extends Error {}

/** MIG module → its Dragnet operations: each console module says which MIG module it carries. */
const CONVERTERS: ReadonlyMap<string, MigImport["convert"]> = new Map(
  Object.values(consoleModules)
    .map((m) => m.mig)
    .filter((m): m is MigImport => m !== undefined)
    .map((m) => [m.module, m.convert]),
);

/** Modules MIG has that Dragnet answers differently or not at all, and what to use instead. */
export const NOT_CARRIED: Record<string, string> = {
  agentdestroy: "MIG agent management, not an investigation (Dragnet agents are managed by their admins)",
  upgrade: "MIG agent management, not an investigation",
};

export interface ImportedAction {
  name: string;
  description: string;
  /** MIG's SQL target, shown to the investigator, never run. */
  migTarget: string;
  operations: Operation[];
  /** Where the conversion could not carry MIG's meaning exactly. */
  notes: Notes;
}

function text(v: unknown): string {
  return typeof v === "string" ? v : typeof v === "number" ? String(v) : "";
}

/** The description: MIG's threat and authorship, kept as text (Dragnet actions have no such fields). */
function describe(raw: Record<string, unknown>, source: string): string {
  const lines = [`Imported from MIG action ${source}.`];
  const threat = raw.threat as Record<string, unknown> | undefined;
  if (threat && typeof threat === "object") {
    const parts = ["level", "family", "type", "ref"]
      .filter((k) => text(threat[k]))
      .map((k) => `${k} ${text(threat[k])}`);
    if (parts.length) lines.push(`Threat: ${parts.join(", ")}.`);
  }
  const d = raw.description as Record<string, unknown> | undefined;
  if (d && typeof d === "object") {
    const who = [text(d.author), d.email ? `<${text(d.email)}>` : ""].filter(Boolean).join(" ");
    if (who) lines.push(`Author: ${who}.`);
    if (text(d.revision)) lines.push(`Revision: ${text(d.revision)}.`);
    if (text(d.url)) lines.push(`Reference: ${text(d.url)}`);
  } else if (typeof raw.description === "string") {
    lines.push(raw.description);
  }
  return lines.join("\n");
}

export function importMigAction(raw: unknown, source: string): ImportedAction {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new MigImportError(`${source} is not a MIG action (expected a JSON object)`);
  }
  const a = raw as Record<string, unknown>;
  if (a.syntaxversion !== undefined && a.syntaxversion !== 2) {
    throw new MigImportError(
      `${source} uses MIG action syntax ${text(a.syntaxversion)}; only version 2 is read`,
    );
  }
  if (typeof a.name !== "string" || a.name.trim() === "") {
    throw new MigImportError(`${source} has no action name`);
  }
  if (!Array.isArray(a.operations) || a.operations.length === 0) {
    throw new MigImportError(`${source} has no operations`);
  }
  // Every problem is collected, so one run of the import names all of them.
  const unsupported: string[] = [];
  const malformed: string[] = [];
  const operations: Operation[] = [];
  const notes: Notes = [];
  for (const [i, op] of (a.operations as unknown[]).entries()) {
    const module = text((op as { module?: unknown })?.module);
    const convert = CONVERTERS.get(module);
    if (!convert) {
      unsupported.push(
        `${module || "(no module)"} (operation ${i + 1}: ${NOT_CARRIED[module] ?? "unknown to Dragnet"})`,
      );
      continue;
    }
    try {
      operations.push(...convert((op as { parameters?: unknown }).parameters, notes));
    } catch (err) {
      malformed.push(`operation ${i + 1} (${module}): ${(err as Error).message}`);
    }
  }
  if (unsupported.length > 0 || malformed.length > 0) {
    const parts = [
      ...(malformed.length ? [malformed.join("; ")] : []),
      ...(unsupported.length ? [`these operations have no Dragnet module: ${unsupported.join("; ")}`] : []),
    ];
    throw new MigImportError(
      `${source} cannot be imported whole: ${parts.join(". ")}. Remove or change them to import the rest.`,
    );
  }
  return {
    name: a.name.trim(),
    description: describe(a, source),
    migTarget: text(a.target),
    operations,
    notes,
  };
}
