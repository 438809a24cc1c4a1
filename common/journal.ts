import { createHash, type KeyObject, sign, verify } from "node:crypto";

// The incident notebook's pages: numbered 1, 2, 3 … without gaps, each holding
// the SHA-256 of its content and the hash of the page before, so the pages
// form a chain. A page an investigator writes carries that investigator's
// signature over its content; every page is sealed by the coordinator's
// journal key over its hash, and so is the notebook's head (how many pages,
// and the last one's hash). Editing, removing, inserting or reordering a page
// directly in the database breaks the chain at that page; cutting pages off
// the end breaks the sealed head. Nothing here is ever edited: a correction is
// a new page that names the one it corrects.

const NOTE_CONTEXT = "dragnet-note-v1\n";
const SEAL_CONTEXT = "dragnet-page-v1\n";
const HEAD_CONTEXT = "dragnet-head-v1\n";

export interface PageFields {
  incidentId: string;
  seq: number;
  atMs: number;
  /** Who: an investigator's name, or "coordinator". */
  author: string;
  /** The investigator's key id when an investigator wrote and signed it; empty for the coordinator's pages. */
  authorKeyId: string;
  kind: string;
  /** JSON text. */
  content: string;
  contentSha256: string;
  prevHash: string;
  /** Base64 Ed25519 signature of the author over noteMessage(); empty for the coordinator's pages. */
  authorSignature: string;
}

export interface Page extends PageFields {
  pageHash: string;
  /** Base64 Ed25519 signature of the coordinator's journal key over the page hash. */
  seal: string;
}

export const sha256Hex = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** What an investigator signs for a page they write: the incident, the time, the kind and the content's hash. */
export function noteMessage(incidentId: string, atMs: number, kind: string, contentSha256: string): Buffer {
  return Buffer.from(`${NOTE_CONTEXT}${incidentId}\n${atMs}\n${kind}\n${contentSha256}`);
}

export function signNote(
  key: KeyObject,
  incidentId: string,
  atMs: number,
  kind: string,
  contentSha256: string,
): string {
  return sign(null, noteMessage(incidentId, atMs, kind, contentSha256), key).toString("base64");
}

/** The hash before page 1: bound to the incident, so pages cannot move between incidents. */
export const genesisHash = (incidentId: string) => sha256Hex(`dragnet-journal-genesis\n${incidentId}`);

export function pageHashOf(p: PageFields): string {
  return sha256Hex(
    JSON.stringify([
      p.incidentId,
      p.seq,
      p.atMs,
      p.author,
      p.authorKeyId,
      p.kind,
      p.contentSha256,
      p.prevHash,
      p.authorSignature,
    ]),
  );
}

/** The next page after `prev` (undefined: the first), hashed and sealed. */
export function sealPage(
  fields: Omit<PageFields, "seq" | "prevHash" | "contentSha256">,
  prev: Pick<Page, "seq" | "pageHash"> | undefined,
  journalKey: KeyObject,
): Page {
  const full: PageFields = {
    ...fields,
    seq: (prev?.seq ?? 0) + 1,
    prevHash: prev?.pageHash ?? genesisHash(fields.incidentId),
    contentSha256: sha256Hex(fields.content),
  };
  const pageHash = pageHashOf(full);
  return {
    ...full,
    pageHash,
    seal: sign(null, Buffer.from(`${SEAL_CONTEXT}${pageHash}`), journalKey).toString("base64"),
  };
}

const headMessage = (incidentId: string, pages: number, lastHash: string) =>
  Buffer.from(`${HEAD_CONTEXT}${incidentId}\n${pages}\n${lastHash}`);

export function sealHead(incidentId: string, pages: number, lastHash: string, journalKey: KeyObject): string {
  return sign(null, headMessage(incidentId, pages, lastHash), journalKey).toString("base64");
}

export type ChainCheck =
  | { ok: true; pages: number }
  | { ok: false; pages: number; seq: number; problem: string };

/**
 * Checks a notebook's pages in the order they are stored, and its sealed head.
 * Names the first page that does not hold, and why.
 */
export function verifyChain(
  incidentId: string,
  pages: Page[],
  head: { pages: number; lastHash: string; seal: string },
  keys: { journal: KeyObject; investigator(keyId: string): KeyObject | undefined },
): ChainCheck {
  const broken = (i: number, problem: string): ChainCheck => ({
    ok: false,
    pages: pages.length,
    seq: i + 1,
    problem,
  });
  const valid = (key: KeyObject, message: Buffer, signature: string) => {
    try {
      return verify(null, message, key, Buffer.from(signature, "base64"));
    } catch {
      return false;
    }
  };
  for (const [i, p] of pages.entries()) {
    if (p.incidentId !== incidentId) return broken(i, `page ${i + 1} belongs to incident ${p.incidentId}`);
    if (p.seq !== i + 1)
      return broken(i, `page ${i + 1} is numbered ${p.seq}: a page was removed, inserted or moved`);
    if (sha256Hex(p.content) !== p.contentSha256)
      return broken(i, `page ${i + 1}'s content does not match its SHA-256`);
    const prev = i === 0 ? genesisHash(incidentId) : pages[i - 1]!.pageHash;
    if (p.prevHash !== prev) return broken(i, `page ${i + 1} does not follow page ${i}: the chain is broken`);
    if (pageHashOf(p) !== p.pageHash) return broken(i, `page ${i + 1}'s fields do not match its hash`);
    if (!valid(keys.journal, Buffer.from(`${SEAL_CONTEXT}${p.pageHash}`), p.seal)) {
      return broken(i, `page ${i + 1}'s seal does not verify with the coordinator's journal key`);
    }
    if (p.authorKeyId) {
      const key = keys.investigator(p.authorKeyId);
      if (!key)
        return broken(i, `page ${i + 1} is signed by key ${p.authorKeyId}, which the keyring does not hold`);
      if (!valid(key, noteMessage(incidentId, p.atMs, p.kind, p.contentSha256), p.authorSignature)) {
        return broken(i, `page ${i + 1}'s signature by ${p.author} does not verify`);
      }
    }
  }
  const last = pages.at(-1)?.pageHash ?? genesisHash(incidentId);
  if (!valid(keys.journal, headMessage(incidentId, head.pages, head.lastHash), head.seal)) {
    return {
      ok: false,
      pages: pages.length,
      seq: pages.length + 1,
      problem: "the notebook's sealed head does not verify",
    };
  }
  if (head.pages !== pages.length || head.lastHash !== last) {
    return {
      ok: false,
      pages: pages.length,
      seq: Math.min(head.pages, pages.length) + 1,
      problem: `the sealed head says ${head.pages} pages, ${pages.length} are there: pages were cut off the end`,
    };
  }
  return { ok: true, pages: pages.length };
}
