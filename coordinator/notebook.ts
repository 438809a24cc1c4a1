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
import { KeyedQueue } from "./keyed-queue.js";
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

/** What a page says; the notebook numbers, chains and seals it. */
type PageFields = Omit<Page, "incidentId" | "seq" | "prevHash" | "contentSha256" | "pageHash" | "seal">;

export class Notebook {
  private readonly publicKey: KeyObject;
  /** Pages are written in the order they are asked for, per incident (a result's page before its action's summary). */
  private readonly appending = new KeyedQueue();

  constructor(
    private readonly store: Store,
    private readonly journalKey: KeyObject,
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.publicKey = createPublicKey(journalKey);
  }

  async open(title: string, severity: string, who: string): Promise<StoredIncident> {
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
    await this.store.putIncident(incident);
    await this.record(
      id,
      "phase change",
      { phase: "identification", title, severity, openedBy: who },
      who,
      "identification",
    );
    return this.get(id);
  }

  /** A full incident id from an id or unambiguous prefix; NOT_FOUND otherwise. */
  resolve(idOrPrefix: string): Promise<string> {
    return resolvePrefix("incident", idOrPrefix, (p, n) => this.store.incidentIdsByPrefix(p, n));
  }

  async get(idOrPrefix: string): Promise<StoredIncident> {
    const incident = await this.store.getIncident(await this.resolve(idOrPrefix));
    if (!incident) throw new DragnetError(Codes.NOT_FOUND, `no incident ${idOrPrefix}`);
    return incident;
  }

  list(limit: number): Promise<StoredIncident[]> {
    return this.store.listIncidents(limit);
  }

  async pages(idOrPrefix: string): Promise<Page[]> {
    return this.store.pagesOf(await this.resolve(idOrPrefix));
  }

  /** A page the coordinator writes (sealed with its journal key). `who` is the investigator it acts for, if any. */
  record(
    incidentId: string,
    kind: string,
    content: unknown,
    who = "coordinator",
    phase?: string,
  ): Promise<Page> {
    return this.append(
      incidentId,
      () => ({
        kind,
        content: JSON.stringify(content),
        author: who,
        authorKeyId: "",
        authorSignature: "",
        atMs: this.now(),
      }),
      phase,
    );
  }

  /** Writes a page for an action's incident, if the action has one; never rejects (the action goes on regardless). */
  async recordFor(incidentId: string, kind: string, content: unknown, who?: string): Promise<void> {
    if (!incidentId) return;
    try {
      await this.record(incidentId, kind, content, who);
    } catch (err) {
      this.log.error("notebook page not written", { incident: incidentId, kind, error: err });
    }
  }

  /** A note written and signed by an investigator. */
  async note(idOrPrefix: string, input: NoteInput, author: { name: string; keyId: string }): Promise<Page> {
    const id = await this.resolve(idOrPrefix);
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
    return this.append(id, (incident) => {
      if (input.corrects && (input.corrects < 1 || input.corrects > incident.headPages)) {
        throw new DragnetError(Codes.PARAMS, `there is no page ${input.corrects} to correct`);
      }
      return {
        kind: "note",
        content,
        author: author.name,
        authorKeyId: author.keyId,
        authorSignature: input.signature,
        atMs: input.atMs,
      };
    });
  }

  async phase(idOrPrefix: string, phase: string, note: string, who: string): Promise<Page> {
    if (!(PHASES as readonly string[]).includes(phase)) {
      throw new DragnetError(Codes.PARAMS, `phase is one of: ${PHASES.join(", ")}`);
    }
    const id = await this.resolve(idOrPrefix);
    // The phase it leaves is the one the incident has as the page is written, not as it was read before.
    return this.append(
      id,
      (incident) => ({
        kind: "phase change",
        content: JSON.stringify({ phase, from: incident.phase, note }),
        author: who,
        authorKeyId: "",
        authorSignature: "",
        atMs: this.now(),
      }),
      phase,
    );
  }

  async verify(idOrPrefix: string): Promise<ChainCheck> {
    const incident = await this.get(idOrPrefix);
    return verifyChain(
      incident.id,
      await this.store.pagesOf(incident.id),
      { pages: incident.headPages, lastHash: incident.headHash, seal: incident.headSeal },
      { journal: this.publicKey, investigator: (keyId) => this.keyring.get(keyId)?.publicKey },
    );
  }

  /**
   * Seals the next page onto the incident's head as the store holds it while
   * the page is written (its transaction holds the incident): two writers,
   * here or on another coordinator sharing the store, each follow the page
   * the other wrote, and the chain stays one line.
   */
  private append(incidentId: string, fieldsOf: (incident: StoredIncident) => PageFields, phase?: string) {
    return this.appending.run(incidentId, async () => {
      try {
        return await this.store.appendPage(incidentId, (incident) => {
          // The head says where the chain ends: no need to read every page to add one.
          const last =
            incident.headPages > 0 ? { seq: incident.headPages, pageHash: incident.headHash } : undefined;
          const page = sealPage({ ...fieldsOf(incident), incidentId }, last, this.journalKey);
          const headSeal = sealHead(incidentId, page.seq, page.pageHash, this.journalKey);
          return { page, head: { headPages: page.seq, headHash: page.pageHash, headSeal }, phase };
        });
      } catch (err) {
        // The store says only that it failed; a missing incident is the caller's NOT_FOUND.
        if (DragnetError.is(err) || (await this.store.getIncident(incidentId))) throw err;
        throw new DragnetError(Codes.NOT_FOUND, `no incident ${incidentId}`);
      }
    });
  }
}
