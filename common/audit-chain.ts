import { createHash, type KeyObject, sign, verify } from "node:crypto";

// The audit log as a chain, like the notebook's pages (journal.ts): each
// coordinator numbers its entries 1, 2, 3 … without gaps, each entry holds
// the hash of the one before and is sealed with the coordinator's journal
// key, and so is the chain's head (how many entries, the last one's hash).
// Deleting or editing a row in the database breaks the chain at that entry;
// cutting entries off the end breaks the sealed head.

const ENTRY_CONTEXT = "dragnet-audit-v1\n";
const HEAD_CONTEXT = "dragnet-audit-head-v1\n";

export interface AuditFieldsOfEntry {
  atMs: number;
  actor: string;
  event: string;
  actionId: string;
  agentId: string;
  code: string;
  message: string;
}

export interface ChainedAudit extends AuditFieldsOfEntry {
  /** Whose chain: the coordinator's id. */
  chain: string;
  /** Its place in the chain, from 1. */
  n: number;
  prevHash: string;
  entryHash: string;
  /** Base64 Ed25519 signature of the journal key over the entry hash. */
  seal: string;
}

export interface AuditHead {
  chain: string;
  n: number;
  hash: string;
  seal: string;
}

const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");

/** The hash before entry 1: bound to the chain, so entries cannot move between chains. */
export const auditGenesis = (chain: string) => sha256Hex(`dragnet-audit-genesis\n${chain}`);

export function auditEntryHash(e: Omit<ChainedAudit, "entryHash" | "seal">): string {
  return sha256Hex(
    JSON.stringify([
      e.chain,
      e.n,
      e.prevHash,
      e.atMs,
      e.actor,
      e.event,
      e.actionId,
      e.agentId,
      e.code,
      e.message,
    ]),
  );
}

const headMessage = (chain: string, n: number, hash: string) =>
  Buffer.from(`${HEAD_CONTEXT}${chain}\n${n}\n${hash}`);

/** The next entry of a chain after `head` (undefined: the first), hashed and sealed, and the chain's new head. */
export function chainAudit(
  fields: AuditFieldsOfEntry,
  chain: string,
  head: Pick<AuditHead, "n" | "hash"> | undefined,
  key: KeyObject,
): { entry: ChainedAudit; head: AuditHead } {
  const n = (head?.n ?? 0) + 1;
  const prevHash = head?.hash ?? auditGenesis(chain);
  const entryHash = auditEntryHash({ ...fields, chain, n, prevHash });
  const entry: ChainedAudit = {
    ...fields,
    chain,
    n,
    prevHash,
    entryHash,
    seal: sign(null, Buffer.from(`${ENTRY_CONTEXT}${entryHash}`), key).toString("base64"),
  };
  const headSeal = sign(null, headMessage(chain, n, entryHash), key).toString("base64");
  return { entry, head: { chain, n, hash: entryHash, seal: headSeal } };
}

export type AuditVerdict =
  | { chain: string; ok: true; entries: number }
  | { chain: string; ok: false; entries: number; brokenAt: number; problem: string };

/**
 * Walks one chain's entries in order (`entries` yields them by n) and checks
 * numbering, links, hashes and seals, then the sealed head. Names the first
 * entry that does not hold.
 */
export function verifyAuditChain(
  chain: string,
  entries: Iterable<ChainedAudit>,
  head: AuditHead | undefined,
  publicKey: KeyObject,
): AuditVerdict {
  let expected = 1;
  let prev = auditGenesis(chain);
  const broken = (at: number, problem: string): AuditVerdict => ({
    chain,
    ok: false,
    entries: expected - 1,
    brokenAt: at,
    problem,
  });
  for (const e of entries) {
    if (e.n !== expected) {
      return broken(
        expected,
        e.n > expected ? `entry ${expected} is missing (the next is ${e.n})` : `entry ${e.n} is out of place`,
      );
    }
    if (e.prevHash !== prev) return broken(e.n, "it does not follow the entry before it (its link differs)");
    if (auditEntryHash(e) !== e.entryHash)
      return broken(e.n, "its content no longer matches its hash (edited)");
    let sealed = false;
    try {
      sealed = verify(
        null,
        Buffer.from(`${ENTRY_CONTEXT}${e.entryHash}`),
        publicKey,
        Buffer.from(e.seal, "base64"),
      );
    } catch {
      sealed = false;
    }
    if (!sealed) return broken(e.n, "its seal is not the coordinator's journal key's");
    prev = e.entryHash;
    expected++;
  }
  const count = expected - 1;
  if (!head)
    return count === 0 ? { chain, ok: true, entries: 0 } : broken(count, "the chain has no sealed head");
  let headSealed = false;
  try {
    headSealed = verify(
      null,
      headMessage(chain, head.n, head.hash),
      publicKey,
      Buffer.from(head.seal, "base64"),
    );
  } catch {
    headSealed = false;
  }
  if (!headSealed) return broken(count, "the chain's head is not sealed by the journal key");
  if (head.n !== count || head.hash !== prev) {
    return broken(
      count + 1,
      `the sealed head names ${head.n} entries; ${count} are left (entries cut off the end)`,
    );
  }
  return { chain, ok: true, entries: count };
}
