import { closeSync, constants, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { JsMsg } from "@nats-io/jetstream";
import {
  Codes,
  DragnetError,
  isId,
  type Logger,
  newId,
  problemOf,
  type Subjects,
  sha256OfFile,
} from "../common/mod.js";
import { EvidenceChunk, EvidenceItem } from "../proto/api.js";
import type { Store } from "./store/store.js";
import { decodeOrRefuse, type Refusal } from "./stream-feed.js";
import type { WriteBatcher } from "./write-batcher.js";

// Files collected from agents arrive in chunks on the evidence stream. Each
// chunk is written at its offset into a partial file (a chunk handed out again
// after a crash writes the same bytes to the same place), and acknowledged.
// The last chunk carries the file as the agent hashed it before sending: the
// coordinator hashes what it assembled, and keeps it as verified evidence
// (EVIDENCE_DIR/<id>, read-only) only when size and SHA-256 agree; otherwise
// it is kept aside (EVIDENCE_DIR/rejected/<id>) and recorded as rejected,
// with the reason.

const MAX_OFFSET = 64 * 1024 ** 3;
const MAX_CHUNK = 1024 * 1024;

/** What the coordinator knows of the action a collection belongs to. */
export interface CollectingAction {
  incidentId: string;
  /** The investigators whose signatures it carried. */
  collectors: string[];
  /** Whether the action sent a collect operation to this agent. */
  collectsFrom(agentId: string): boolean;
}

export class EvidenceDesk {
  private readonly partialDir: string;
  private readonly rejectedDir: string;
  /** Told of each item once it is committed (the notebook's evidence page). */
  onEvidence: (item: EvidenceItem) => void = () => undefined;

  constructor(
    private readonly dir: string,
    private readonly store: Store,
    private readonly batcher: WriteBatcher,
    private readonly subjects: Subjects,
    private readonly lookup: {
      action(actionId: string): CollectingAction | undefined;
      hostname(agentId: string): string;
    },
    private readonly log: Logger,
    private readonly refused: Refusal,
    private readonly now: () => number = Date.now,
  ) {
    this.partialDir = join(dir, ".partial");
    this.rejectedDir = join(dir, "rejected");
    for (const d of [dir, this.partialDir, this.rejectedDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  /** One chunk from the stream. */
  onMessage(m: JsMsg): void {
    const agentId = this.subjects.agentOf(m.subject);
    let chunk: EvidenceChunk;
    try {
      if (!agentId) throw new DragnetError(Codes.SUBJECT_MISMATCH, `bad subject ${m.subject}`);
      chunk = decodeOrRefuse("evidence chunk", EvidenceChunk.decode, m.data);
      if (!isId(chunk.uploadId) || !isId(chunk.actionId))
        throw new DragnetError(Codes.DECODE, "evidence chunk: bad upload or action id");
      if (chunk.offset > MAX_OFFSET || chunk.data.length > MAX_CHUNK)
        throw new DragnetError(Codes.TOO_LARGE, "evidence chunk out of bounds");
      const partial = join(this.partialDir, `${agentId}.${chunk.uploadId}`);
      if (chunk.data.length > 0) {
        // Created if new, never truncated: a positional write places the bytes at their offset.
        const rw = openSync(partial, constants.O_RDWR | constants.O_CREAT, 0o600);
        try {
          writeSync(rw, chunk.data, 0, chunk.data.length, chunk.offset);
        } finally {
          closeSync(rw);
        }
      }
      if (!chunk.last) {
        m.ack();
        return;
      }
    } catch (err) {
      const p = problemOf(err, Codes.DECODE);
      if (p.code === Codes.DECODE || p.code === Codes.SUBJECT_MISMATCH || p.code === Codes.TOO_LARGE) {
        m.term();
        this.refused(agentId, m.subject, p);
      } else {
        this.log.error("evidence chunk not written; it will be handed out again", {
          subject: m.subject,
          ...p,
        });
        m.nak(2000);
      }
      return;
    }
    this.finish(m, agentId, chunk).catch((err) => {
      this.log.error("evidence not finished; the last chunk will be handed out again", { error: err });
      m.nak(2000);
    });
  }

  /** The last chunk: hash what was assembled, keep it as verified or rejected, record it, then acknowledge. */
  private async finish(m: JsMsg, agentId: string, last: EvidenceChunk): Promise<void> {
    const partial = join(this.partialDir, `${agentId}.${last.uploadId}`);
    const file = last.file;
    const action = this.lookup.action(last.actionId);
    const item: EvidenceItem = {
      id: newId(),
      agentId,
      hostname: this.lookup.hostname(agentId),
      actionId: last.actionId,
      incidentId: action?.incidentId ?? "",
      uploadId: last.uploadId,
      path: file?.path ?? "",
      size: file?.size ?? 0,
      sha256: file?.sha256 ?? "",
      mtimeMs: file?.mtimeMs ?? 0,
      mode: file?.mode ?? "",
      uid: file?.uid ?? 0,
      gid: file?.gid ?? 0,
      receivedAtMs: this.now(),
      collectors: action?.collectors ?? [],
      status: "verified",
      problem: "",
    };
    const { size, sha256 } = await this.hash(partial);
    let problem = "";
    if (!file) problem = "the last chunk does not describe the file";
    else if (!action?.collectsFrom(agentId))
      problem = `action ${last.actionId} did not ask this agent to collect`;
    else if (size !== file.size) problem = `${size} bytes arrived, the agent sent ${file.size}`;
    else if (sha256 !== file.sha256)
      problem = `what arrived hashes to ${sha256}, the agent hashed ${file.sha256} before sending`;
    if (problem) {
      item.status = "rejected";
      item.problem = problem;
      renameSync(partial, join(this.rejectedDir, item.id));
      this.log.warn("evidence rejected", { agent: agentId, upload: last.uploadId, problem });
    } else {
      const fd = openSync(partial, "r");
      fsyncSync(fd);
      closeSync(fd);
      renameSync(partial, join(this.dir, item.id));
      this.log.info("evidence received", { agent: agentId, id: item.id, path: item.path, size, sha256 });
    }
    this.batcher.evidence({
      id: item.id,
      agentId,
      incidentId: item.incidentId,
      receivedAtMs: item.receivedAtMs,
      payload: EvidenceItem.encode(item).finish(),
    });
    this.batcher.afterCommit(() => {
      m.ack();
      this.onEvidence(item);
    });
  }

  private async hash(path: string): Promise<{ size: number; sha256: string }> {
    // Nothing arrived when the file is empty (no data chunk): an empty partial file stands for it.
    closeSync(openSync(path, "a", 0o600));
    return sha256OfFile(path);
  }

  /** Evidence that did not come through collect, entered by hand with its hash (no file is kept). */
  register(
    input: { incidentId: string; hostname: string; path: string; sha256: string; size: number; note: string },
    who: string,
  ): EvidenceItem {
    if (!/^[0-9a-f]{64}$/.test(input.sha256))
      throw new DragnetError(Codes.PARAMS, "evidence: the SHA-256 is 64 lowercase hex digits");
    if (!input.path || input.path.length > 4096)
      throw new DragnetError(Codes.PARAMS, "evidence: give the item's path or description (at most 4096)");
    const item: EvidenceItem = {
      ...EvidenceItem.fromPartial({}),
      id: newId(this.now()),
      hostname: input.hostname,
      incidentId: input.incidentId,
      path: input.path,
      size: input.size,
      sha256: input.sha256,
      receivedAtMs: this.now(),
      collectors: [who],
      status: "registered",
      problem: input.note,
    };
    this.batcher.evidence({
      id: item.id,
      agentId: "",
      incidentId: item.incidentId,
      receivedAtMs: item.receivedAtMs,
      payload: EvidenceItem.encode(item).finish(),
    });
    this.batcher.flush();
    this.onEvidence(item);
    return item;
  }

  /** Hashes the stored file again and compares with what was recorded on receipt. */
  async verifyStored(
    id: string,
  ): Promise<{ ok: boolean; sha256: string; expected: string; problem: string }> {
    const { item, file } = this.get(id);
    if (item.status === "registered") {
      return {
        ok: false,
        sha256: "",
        expected: item.sha256,
        problem: "registered by hand: Dragnet keeps no copy to hash",
      };
    }
    try {
      const { sha256, size } = await sha256OfFile(file);
      const ok = sha256 === item.sha256 && size === item.size;
      return {
        ok,
        sha256,
        expected: item.sha256,
        problem: ok ? "" : `the stored file (${size} bytes) no longer hashes as recorded`,
      };
    } catch (err) {
      return {
        ok: false,
        sha256: "",
        expected: item.sha256,
        problem: `the stored file cannot be read: ${(err as Error).message}`,
      };
    }
  }

  list(incidentId: string, limit: number): EvidenceItem[] {
    this.batcher.flush();
    return this.store.listEvidence(incidentId, limit).map((e) => EvidenceItem.decode(e.payload));
  }

  /** An item and where its bytes are; NOT_FOUND when there is none. */
  get(id: string): { item: EvidenceItem; file: string } {
    this.batcher.flush();
    const row = /^[0-9a-z]{26}$/.test(id) ? this.store.getEvidence(id) : undefined;
    if (!row) throw new DragnetError(Codes.NOT_FOUND, `no evidence ${id.slice(0, 40)}`);
    const item = EvidenceItem.decode(row.payload);
    return { item, file: join(item.status === "verified" ? this.dir : this.rejectedDir, item.id) };
  }
}
