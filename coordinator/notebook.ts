import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, verify } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import {
  type ChainCheck,
  genesisHash,
  noteMessage,
  type Page,
  sealHead,
  sealPage,
  sha256Hex,
  verifyChain,
} from "../common/journal.js";
import { Codes, DragnetError, type Keyring, type Logger, newId, writeFileAtomic } from "../common/mod.js";
import { PHASES, SEVERITIES } from "../common/notebook-pages.js";
import { resolvePrefix } from "./id-prefix.js";
import type { Store, StoredIncident } from "./store/store.js";

// The incident notebook: incidents with their phase, and for each an
// append-only journal of numbered, chained, sealed pages (common/journal.ts).
// Investigators write notes (signed by their own key); the coordinator writes
// pages for everything done through Dragnet with the incident's id — actions
// submitted and approved, result summaries, isolation, evidence, alerts,
// phase changes — sealed with its journal key, kept beside the database.

/** The journal key: made on first start, 0600 beside the database; whoever holds it can seal pages. */
export function loadJournalKey(path: string): KeyObject {
  if (!existsSync(path)) {
    const { privateKey } = generateKeyPairSync("ed25519");
    writeFileAtomic(path, privateKey.export({ format: "pem", type: "pkcs8" }).toString(), 0o600);
  }
  return createPrivateKey(readFileSync(path));
}

export interface NoteInput {
  text: string;
  atMs: number;
  /** Base64 signature of the author over noteMessage(incident, atMs, "note", sha256(content)). */
  signature: string;
  /** The page this one corrects (0: none). */
  corrects: number;
}

export class Notebook {
  private readonly publicKey: KeyObject;

  constructor(
    private readonly store: Store,
    private readonly journalKey: KeyObject,
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.publicKey = createPublicKey(journalKey);
  }

  open(title: string, severity: string, who: string): StoredIncident {
    if (!title.trim() || title.length > 500)
      throw new DragnetError(Codes.PARAMS, "an incident needs a title (at most 500 characters)");
    if (!SEVERITIES.includes(severity)) {
      throw new DragnetError(
        Codes.PARAMS,
        `severity is one of ${SEVERITIES.join(", ")}, not "${severity.slice(0, 20)}"`,
      );
    }
    const id = newId(this.now());
    const incident: StoredIncident = {
      id,
      title,
      severity,
      phase: "identification",
      openedAtMs: this.now(),
      openedBy: who,
      headPages: 0,
      headHash: genesisHash(id),
      headSeal: sealHead(id, 0, genesisHash(id), this.journalKey),
    };
    this.store.putIncident(incident);
    this.record(
      id,
      "phase change",
      { phase: "identification", title, severity, openedBy: who },
      who,
      "identification",
    );
    return this.get(id);
  }

  /** A full incident id from an id or unambiguous prefix; NOT_FOUND otherwise. */
  resolve(idOrPrefix: string): string {
    return resolvePrefix("incident", idOrPrefix, (p, n) => this.store.incidentIdsByPrefix(p, n));
  }

  get(idOrPrefix: string): StoredIncident {
    const incident = this.store.getIncident(this.resolve(idOrPrefix));
    if (!incident) throw new DragnetError(Codes.NOT_FOUND, `no incident ${idOrPrefix}`);
    return incident;
  }

  list(limit: number): StoredIncident[] {
    return this.store.listIncidents(limit);
  }

  pages(idOrPrefix: string): Page[] {
    return this.store.pagesOf(this.resolve(idOrPrefix));
  }

  /** A page the coordinator writes (sealed with its journal key). `who` is the investigator it acts for, if any. */
  record(incidentId: string, kind: string, content: unknown, who = "coordinator", phase?: string): Page {
    return this.append(
      incidentId,
      {
        kind,
        content: JSON.stringify(content),
        author: who,
        authorKeyId: "",
        authorSignature: "",
        atMs: this.now(),
      },
      phase,
    );
  }

  /** Writes a page for an action's incident, if the action has one; never throws (the action goes on regardless). */
  recordFor(incidentId: string, kind: string, content: unknown, who?: string): void {
    if (!incidentId) return;
    try {
      this.record(incidentId, kind, content, who);
    } catch (err) {
      this.log.error("notebook page not written", { incident: incidentId, kind, error: err });
    }
  }

  /** A note written and signed by an investigator. */
  note(idOrPrefix: string, input: NoteInput, author: { name: string; keyId: string }): Page {
    const id = this.resolve(idOrPrefix);
    if (!input.text.trim() || input.text.length > 100_000)
      throw new DragnetError(Codes.PARAMS, "a note holds 1 to 100,000 characters");
    if (Math.abs(this.now() - input.atMs) > 10 * 60_000)
      throw new DragnetError(Codes.PARAMS, "the note's time is more than 10 minutes off");
    const content = JSON.stringify(
      input.corrects ? { text: input.text, corrects: input.corrects } : { text: input.text },
    );
    const investigator = this.keyring.get(author.keyId);
    const signed =
      investigator &&
      verify(
        null,
        noteMessage(id, input.atMs, "note", sha256Hex(content)),
        investigator.publicKey,
        Buffer.from(input.signature, "base64"),
      );
    if (!signed)
      throw new DragnetError(Codes.SIG_INVALID, `the note's signature by ${author.name} does not verify`);
    if (input.corrects && (input.corrects < 1 || input.corrects > this.get(id).headPages)) {
      throw new DragnetError(Codes.PARAMS, `there is no page ${input.corrects} to correct`);
    }
    return this.append(id, {
      kind: "note",
      content,
      author: author.name,
      authorKeyId: author.keyId,
      authorSignature: input.signature,
      atMs: input.atMs,
    });
  }

  phase(idOrPrefix: string, phase: string, note: string, who: string): Page {
    if (!(PHASES as readonly string[]).includes(phase)) {
      throw new DragnetError(Codes.PARAMS, `phase is one of: ${PHASES.join(", ")}`);
    }
    const incident = this.get(idOrPrefix);
    return this.record(incident.id, "phase change", { phase, from: incident.phase, note }, who, phase);
  }

  verify(idOrPrefix: string): ChainCheck {
    const incident = this.get(idOrPrefix);
    return verifyChain(
      incident.id,
      this.store.pagesOf(incident.id),
      { pages: incident.headPages, lastHash: incident.headHash, seal: incident.headSeal },
      { journal: this.publicKey, investigator: (keyId) => this.keyring.get(keyId)?.publicKey },
    );
  }

  private append(
    incidentId: string,
    fields: Omit<Page, "incidentId" | "seq" | "prevHash" | "contentSha256" | "pageHash" | "seal">,
    phase?: string,
  ): Page {
    const incident = this.store.getIncident(incidentId);
    if (!incident) throw new DragnetError(Codes.NOT_FOUND, `no incident ${incidentId}`);
    // The head says where the chain ends: no need to read every page to add one.
    const last =
      incident.headPages > 0 ? { seq: incident.headPages, pageHash: incident.headHash } : undefined;
    const page = sealPage({ ...fields, incidentId }, last, this.journalKey);
    this.store.appendPage(
      page,
      {
        headPages: page.seq,
        headHash: page.pageHash,
        headSeal: sealHead(incidentId, page.seq, page.pageHash, this.journalKey),
      },
      phase,
    );
    return page;
  }
}
