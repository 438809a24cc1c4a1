import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  type Page,
  pageHashOf,
  sealHead,
  sealPage,
  sha256Hex,
  signNote,
  verifyChain,
} from "../../common/journal.js";
import { generateInvestigatorKey } from "../../common/mod.js";

// The notebook's chain: built page by page, then every kind of tampering —
// a page edited, removed, inserted, moved, cut off the end, re-hashed without
// the journal key — is caught at the page where it happened.

const journal = generateKeyPairSync("ed25519");
const alice = generateInvestigatorKey("alice");
const ID = "01m8inc0000000000000000000";

function notebook(n: number): Page[] {
  const pages: Page[] = [];
  for (let i = 0; i < n; i++) {
    const atMs = 1_800_000_000_000 + i * 1000;
    const byAlice = i % 2 === 1;
    const content = JSON.stringify({ text: `page ${i + 1}` });
    pages.push(
      sealPage(
        {
          incidentId: ID,
          atMs,
          author: byAlice ? "alice" : "coordinator",
          authorKeyId: byAlice ? alice.keyId : "",
          kind: byAlice ? "note" : "action submitted",
          content,
          authorSignature: byAlice ? signNote(alice.privateKey, ID, atMs, "note", sha256Hex(content)) : "",
        },
        pages.at(-1),
        journal.privateKey,
      ),
    );
  }
  return pages;
}

const head = (pages: Page[]) => ({
  pages: pages.length,
  lastHash: pages.at(-1)!.pageHash,
  seal: sealHead(ID, pages.length, pages.at(-1)!.pageHash, journal.privateKey),
});
const keys = {
  journal: journal.publicKey,
  investigator: (keyId: string) => (keyId === alice.keyId ? alice.privateKey : undefined),
};
const check = (pages: Page[], h = head(notebook(5))) => verifyChain(ID, pages, h, keys);

describe("the notebook's chain", () => {
  it("holds when nothing was touched", () => {
    const pages = notebook(5);
    expect(pages.map((p) => p.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(pages[1]!.prevHash).toBe(pages[0]!.pageHash);
    expect(verifyChain(ID, pages, head(pages), keys)).toEqual({ ok: true, pages: 5 });
  });

  it("names the page whose content was edited", () => {
    const pages = notebook(5);
    pages[2] = { ...pages[2]!, content: JSON.stringify({ text: "nothing happened" }) };
    expect(check(pages)).toMatchObject({
      ok: false,
      seq: 3,
      problem: "page 3's content does not match its SHA-256",
    });
  });

  it("names an edited page even when the editor fixed its content hash", () => {
    const pages = notebook(5);
    const content = JSON.stringify({ text: "nothing happened" });
    pages[2] = { ...pages[2]!, content, contentSha256: sha256Hex(content) };
    expect(check(pages)).toMatchObject({
      ok: false,
      seq: 3,
      problem: "page 3's fields do not match its hash",
    });
  });

  it("names a page re-hashed and re-chained without the journal key (its seal fails)", () => {
    const pages = notebook(5);
    const content = JSON.stringify({ text: "nothing happened" });
    const edited = { ...pages[2]!, content, contentSha256: sha256Hex(content) };
    pages[2] = { ...edited, pageHash: pageHashOf(edited) };
    expect(check(pages)).toMatchObject({
      ok: false,
      seq: 3,
      problem: expect.stringMatching(/seal does not verify/),
    });
  });

  it("names a page whose author's signature does not hold", () => {
    const pages = notebook(5);
    pages[1] = { ...pages[1]!, authorSignature: pages[3]!.authorSignature };
    const r = check(pages);
    expect(r).toMatchObject({ ok: false, seq: 2 });
  });

  it("names where a page was removed, inserted or moved", () => {
    const removed = notebook(5);
    removed.splice(1, 1);
    expect(check(removed)).toMatchObject({
      ok: false,
      seq: 2,
      problem: "page 2 is numbered 3: a page was removed, inserted or moved",
    });
    const moved = notebook(5);
    [moved[2], moved[3]] = [moved[3]!, moved[2]!];
    expect(check(moved)).toMatchObject({ ok: false, seq: 3 });
    const inserted = notebook(5);
    inserted.splice(2, 0, { ...inserted[2]!, seq: 3 });
    expect(check(inserted)).toMatchObject({ ok: false, seq: 4 });
  });

  it("notices pages cut off the end, through the sealed head", () => {
    const pages = notebook(5);
    expect(check(pages.slice(0, 4))).toMatchObject({
      ok: false,
      seq: 5,
      problem: "the sealed head says 5 pages, 4 are there: pages were cut off the end",
    });
    expect(verifyChain(ID, pages, { ...head(pages), pages: 4 }, keys)).toMatchObject({
      ok: false,
      problem: "the notebook's sealed head does not verify",
    });
  });
});
