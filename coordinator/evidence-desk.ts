import { createHash, type Hash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { Msg } from "@nats-io/transport-node";
import { Codes, DragnetError, isId, type Logger, newId, problemOf } from "../common/mod.js";
import {
  type CollectParams,
  type CollectResult,
  EvidenceChunk,
  EvidenceItem,
  EvidenceReceipt,
} from "../proto/api.js";
import type { EvidenceVault } from "./evidence-vault.js";
import { resolvePrefix } from "./id-prefix.js";
import type { Store } from "./store/store.js";
import { decodeOrRefuse, type Refusal } from "./stream-feed.js";
import type { WriteBatcher } from "./write-batcher.js";

// Files collected from agents. Each chunk is a request an agent sends to the
// coordinator that sent its collect command, answered once the chunk is
// written: nothing travels through a shared stream that another agent could
// fill (several coordinators: the one that took over a silent coordinator's
// actions answers for them too). An upload is taken only when it is announced (its first chunk: the
// file as the agent hashed it) for a collect this coordinator sent to that
// agent and that is still running, no larger than the signed action allows;
// chunks must then come in order and within the announced size. The
// coordinator hashes as it writes (each upload once, into a file under
// WORK_DIR/.partial/<coordinator>.<agent>.<upload>); at the last chunk it hands the file to the vault
// (evidence-vault.ts: its disk, or the JetStream object store) as verified
// evidence when size and SHA-256 agree, otherwise as rejected with the reason.
// An upload idle for IDLE_MS, refused, or cut by a restart leaves nothing behind.

const MAX_CHUNK = 1024 * 1024;
/** An upload without a chunk for this long is dropped (the agent gave up or died). */
const IDLE_MS = 5 * 60_000;
/** What a collect may fetch unless its signed parameters say otherwise (as the agent's default). */
const DEFAULT_MAX_BYTES = 1024 ** 3;

/** What the coordinator knows of a running action that may send it files. */
export interface CollectingAction {
  incidentId: string;
  /** The investigators whose signatures it carried. */
  collectors: string[];
  /** The collect operations it signed. */
  collects: CollectParams[];
  /** Whether the action sent a command to this agent. */
  targets(agentId: string): boolean;
}

interface Upload {
  agentId: string;
  actionId: string;
  uploadId: string;
  file: CollectResult;
  partial: string;
  fd: number;
  hash: Hash;
  received: number;
  lastAtMs: number;
}

export class EvidenceDesk {
  private readonly partialDir: string;
  private readonly uploads = new Map<string, Upload>();
  /** Uploads finished (kept as verified or rejected), by action and agent: a collect operation makes one. */
  private readonly madeBy = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;
  /** Told of each item once it is committed (the notebook's evidence page); never rejects. */
  onEvidence: (item: EvidenceItem) => Promise<void> = () => Promise.resolve();

  constructor(
    /** Where uploads are assembled (a local directory, whatever the vault). */
    workDir: string,
    /** This coordinator's id: its uploads' names begin with it (coordinators on one host may share workDir). */
    private readonly coordinatorId: string,
    private readonly vault: EvidenceVault,
    private readonly store: Store,
    private readonly batcher: WriteBatcher,
    private readonly lookup: {
      /** A running action (undefined once it is complete, or when there is none). */
      action(actionId: string): CollectingAction | undefined;
      hostname(agentId: string): string;
      /** Several coordinators: whether another one dispatches the action (and answers for it). */
      elsewhere?(actionId: string): Promise<boolean>;
    },
    /** The agent that signed a message (throws when none did). */
    private readonly authenticate: (m: Msg) => string,
    private readonly log: Logger,
    private readonly refused: Refusal,
    private readonly now: () => number = Date.now,
  ) {
    this.partialDir = join(workDir, ".partial");
    mkdirSync(this.partialDir, { recursive: true, mode: 0o700 });
    // Uploads live in memory: what a previous run left half-written is of no upload now
    // (another coordinator's, beside it, are that one's).
    for (const f of readdirSync(this.partialDir))
      if (f.startsWith(`${coordinatorId}.`)) rmSync(join(this.partialDir, f), { force: true });
    this.sweeper = setInterval(() => this.dropIdle(), 30_000);
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
    for (const u of [...this.uploads.values()]) this.drop(u);
  }

  /** One chunk, asked by an agent: answered with what was stored, or why it was refused. */
  onRequest(msg: Msg): void {
    let agentId: string | undefined;
    let chunk: EvidenceChunk | undefined;
    const answer = (r: Partial<EvidenceReceipt>) =>
      msg.respond(EvidenceReceipt.encode(EvidenceReceipt.fromPartial(r)).finish());
    try {
      agentId = this.authenticate(msg);
      chunk = decodeOrRefuse("evidence chunk", EvidenceChunk.decode, msg.data);
      const upload = this.take(agentId, chunk);
      if (!chunk.last) {
        answer({ received: upload.received });
        return;
      }
      this.finish(upload, chunk).then(
        (item) => answer({ received: upload.received, evidenceId: item.id, status: item.status }),
        (err) => {
          // Assembled and checked, but not kept (the object store unreachable, a full disk): the agent is told.
          this.log.error("evidence not kept", { agent: agentId, upload: upload.uploadId, error: err });
          answer({ problem: problemOf(err) });
        },
      );
    } catch (err) {
      const p = problemOf(err);
      const refuse = () => {
        // A refusal is the sender's doing; anything else (a full disk) is the coordinator's, and logged.
        if (DragnetError.is(err)) this.refused(agentId, msg.subject, p);
        else this.log.error("evidence chunk not stored", { subject: msg.subject, error: err });
        answer({ problem: p });
      };
      // Several coordinators may hear a silent one's subject (it, back, and the one that took it
      // over): only the one that dispatches the action answers for it.
      const actionId = chunk?.actionId;
      if (actionId && this.lookup.elsewhere && DragnetError.is(err) && !this.lookup.action(actionId)) {
        this.lookup.elsewhere(actionId).then((elsewhere) => elsewhere || refuse(), refuse);
        return;
      }
      refuse();
    }
  }

  /** Registers an upload at its first chunk, or writes a chunk of one; refuses (and drops the upload) what does not fit. */
  private take(agentId: string, chunk: EvidenceChunk): Upload {
    if (!isId(chunk.uploadId) || !isId(chunk.actionId))
      throw new DragnetError(Codes.DECODE, "evidence chunk: bad upload or action id");
    const key = `${agentId}.${chunk.uploadId}`;
    let upload = this.uploads.get(key);
    if (!upload) {
      if (chunk.offset !== 0) {
        throw new DragnetError(
          Codes.NOT_FOUND,
          `no upload ${chunk.uploadId} from this agent (it was never announced, or was dropped)`,
        );
      }
      upload = this.announce(agentId, chunk);
    }
    const u = upload;
    try {
      if (chunk.actionId !== u.actionId)
        throw new DragnetError(Codes.SUBJECT_MISMATCH, "the chunk names another action");
      if (chunk.offset !== u.received)
        throw new DragnetError(Codes.PARAMS, `chunk at byte ${chunk.offset}; byte ${u.received} was next`);
      if (chunk.data.length > MAX_CHUNK)
        throw new DragnetError(Codes.TOO_LARGE, "an evidence chunk over 1 MiB");
      if (u.received + chunk.data.length > u.file.size) {
        throw new DragnetError(Codes.TOO_LARGE, `more than the ${u.file.size} bytes the upload announced`);
      }
      if (chunk.data.length > 0) {
        writeSync(u.fd, chunk.data, 0, chunk.data.length, u.received);
        u.hash.update(chunk.data);
        u.received += chunk.data.length;
      }
      u.lastAtMs = this.now();
      return u;
    } catch (err) {
      this.drop(u);
      throw err;
    }
  }

  /** An announced upload, for a running collect of this agent's, within what the action signed. */
  private announce(agentId: string, first: EvidenceChunk): Upload {
    const action = this.lookup.action(first.actionId);
    if (!action || action.collects.length === 0 || !action.targets(agentId)) {
      throw new DragnetError(
        Codes.NOT_ALLOWED,
        `action ${first.actionId} is no running collect of this agent's: nothing to upload`,
      );
    }
    const file = first.file;
    if (
      !file ||
      !isId(file.uploadId) ||
      file.uploadId !== first.uploadId ||
      !/^[0-9a-f]{64}$/.test(file.sha256)
    ) {
      throw new DragnetError(Codes.DECODE, "the first chunk of an upload announces the file (size, SHA-256)");
    }
    const made = `${first.actionId}.${agentId}`;
    // The agent sends a file again from its first byte when an answer did not come in time:
    // the new upload takes the place of the one it abandoned.
    const open = [...this.uploads.values()].filter(
      (u) => u.agentId === agentId && u.actionId === first.actionId,
    );
    for (const u of open.filter((o) => o.file.path === file.path)) this.drop(u);
    // One file per collect, or up to max_files for a collect of a directory: those kept, and those on the way.
    const files = action.collects.reduce((n, c) => n + (c.maxFiles ?? 1), 0);
    const onTheWay = open.filter((o) => o.file.path !== file.path).length;
    if ((this.madeBy.get(made) ?? 0) + onTheWay >= files) {
      throw new DragnetError(
        Codes.NOT_ALLOWED,
        `action ${first.actionId} asked this agent for ${files} file(s), and has them`,
      );
    }
    const allowed = action.collects.filter((c) => {
      const root = c.path.replace(/\/+$/, "");
      const named =
        c.followSymlinks ||
        root === file.path ||
        (c.maxFiles !== undefined && file.path.startsWith(`${root}/`));
      return file.size <= (c.maxBytes ?? DEFAULT_MAX_BYTES) && named;
    });
    if (allowed.length === 0) {
      throw new DragnetError(
        Codes.NOT_ALLOWED,
        `${file.path.slice(0, 200)} (${file.size} bytes) is not what action ${first.actionId} asked for, or is larger than it allows`,
      );
    }
    const partial = join(this.partialDir, `${this.coordinatorId}.${agentId}.${first.uploadId}`);
    const upload: Upload = {
      agentId,
      actionId: first.actionId,
      uploadId: first.uploadId,
      file,
      partial,
      fd: openSync(partial, "wx", 0o600),
      hash: createHash("sha256"),
      received: 0,
      lastAtMs: this.now(),
    };
    this.uploads.set(`${agentId}.${first.uploadId}`, upload);
    return upload;
  }

  private drop(u: Upload): void {
    if (!this.uploads.delete(`${u.agentId}.${u.uploadId}`)) return;
    closeSync(u.fd);
    rmSync(u.partial, { force: true });
  }

  private dropIdle(): void {
    const now = this.now();
    for (const u of [...this.uploads.values()]) {
      if (now - u.lastAtMs < IDLE_MS) continue;
      this.log.warn("evidence upload dropped: no chunk for 5 minutes", {
        agent: u.agentId,
        upload: u.uploadId,
      });
      this.drop(u);
    }
  }

  /** The last chunk: what was assembled against what was announced; kept as verified or rejected, and recorded. */
  private async finish(u: Upload, last: EvidenceChunk): Promise<EvidenceItem> {
    this.uploads.delete(`${u.agentId}.${u.uploadId}`);
    const made = `${u.actionId}.${u.agentId}`;
    this.madeBy.set(made, (this.madeBy.get(made) ?? 0) + 1);
    const action = this.lookup.action(u.actionId);
    const sha256 = u.hash.digest("hex");
    const file = u.file;
    const item: EvidenceItem = {
      id: newId(),
      agentId: u.agentId,
      hostname: this.lookup.hostname(u.agentId),
      actionId: u.actionId,
      incidentId: action?.incidentId ?? "",
      uploadId: u.uploadId,
      path: file.path,
      size: file.size,
      sha256: file.sha256,
      mtimeMs: file.mtimeMs,
      mode: file.mode,
      uid: file.uid,
      gid: file.gid,
      receivedAtMs: this.now(),
      collectors: action?.collectors ?? [],
      status: "verified",
      problem: "",
    };
    let problem = "";
    if (last.file && (last.file.size !== file.size || last.file.sha256 !== file.sha256))
      problem = "the last chunk describes another file than the first announced";
    else if (u.received !== file.size)
      problem = `${u.received} bytes arrived, the agent announced ${file.size}`;
    else if (sha256 !== file.sha256)
      problem = `what arrived hashes to ${sha256}, the agent hashed ${file.sha256} before sending`;
    try {
      fsyncSync(u.fd);
    } finally {
      closeSync(u.fd);
    }
    if (problem) {
      item.status = "rejected";
      item.problem = problem;
      await this.vault.keep(item.id, "rejected", u.partial, sha256);
      this.log.warn("evidence rejected", { agent: u.agentId, upload: u.uploadId, problem });
    } else {
      await this.vault.keep(item.id, "verified", u.partial, sha256);
      this.log.info("evidence received", {
        agent: u.agentId,
        id: item.id,
        path: item.path,
        size: u.received,
        sha256,
      });
    }
    this.batcher.evidence({
      id: item.id,
      agentId: u.agentId,
      incidentId: item.incidentId,
      receivedAtMs: item.receivedAtMs,
      payload: EvidenceItem.encode(item).finish(),
    });
    // The agent hears of its item once the item is stored and its page written.
    return new Promise((resolve) =>
      this.batcher.afterCommit(() => resolve(this.onEvidence(item).then(() => item))),
    );
  }

  /** Evidence that did not come through collect, entered by hand with its hash (no file is kept). */
  async register(
    input: { incidentId: string; hostname: string; path: string; sha256: string; size: number; note: string },
    who: string,
  ): Promise<EvidenceItem> {
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
    await this.batcher.flush();
    await this.onEvidence(item);
    return item;
  }

  /** Hashes the stored file again and compares with what was recorded on receipt. */
  async verifyStored(
    id: string,
  ): Promise<{ ok: boolean; sha256: string; expected: string; problem: string }> {
    const { item } = await this.get(id);
    if (item.status === "registered") {
      return {
        ok: false,
        sha256: "",
        expected: item.sha256,
        problem: "registered by hand: Dragnet keeps no copy to hash",
      };
    }
    try {
      const hash = createHash("sha256");
      let size = 0;
      for await (const chunk of await this.read(item)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      const sha256 = hash.digest("hex");
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

  async list(incidentId: string, limit: number): Promise<EvidenceItem[]> {
    await this.batcher.flush();
    return (await this.store.listEvidence(incidentId, limit)).map((e) => EvidenceItem.decode(e.payload));
  }

  /** The stored bytes of a collected item (NOT_FOUND for one registered by hand, or gone). */
  read(item: EvidenceItem): Promise<Readable> {
    if (item.status !== "verified" && item.status !== "rejected")
      throw new DragnetError(Codes.NOT_FOUND, `evidence ${item.id} was registered by hand: no copy is kept`);
    return this.vault.open(item.id, item.status);
  }

  /** An item by its id or a prefix of it; NOT_FOUND when there is none. */
  async get(id: string): Promise<{ item: EvidenceItem }> {
    await this.batcher.flush();
    const full = await resolvePrefix("evidence", id, (p, n) => this.store.evidenceIdsByPrefix(p, n));
    const row = await this.store.getEvidence(full);
    if (!row) throw new DragnetError(Codes.NOT_FOUND, `no evidence ${full}`);
    return { item: EvidenceItem.decode(row.payload) };
  }
}
