import { createReadStream, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { Codes, DragnetError } from "../common/mod.js";
import { EVIDENCE_BUCKET } from "../common/nats-authority.js";

// Where the bytes of collected evidence are kept once an upload is assembled
// and checked. One coordinator keeps them on its own disk (evidenceDir);
// coordinators sharing a PostgreSQL store keep them in a JetStream object
// store bucket, replicated like the results stream, so that any coordinator
// hands out, or checks again, what another received, and a coordinator's lost
// disk loses no evidence. Either way the record (hash, origin, custody) is in
// the store, and every read is hashed again by whoever reads it.

export type EvidenceVerdict = "verified" | "rejected";

export interface EvidenceVault {
  /** Where the bytes go, for the log and the README's operator steps. */
  readonly where: string;
  /** Keeps the assembled file `file` (consumed: moved or deleted) as item `id`. */
  keep(id: string, verdict: EvidenceVerdict, file: string, sha256: string): Promise<void>;
  /** The stored bytes of item `id`; NOT_FOUND when they are gone. */
  open(id: string, verdict: EvidenceVerdict): Promise<Readable>;
}

/** Files under one directory: verified ones at `<dir>/<id>`, rejected ones at `<dir>/rejected/<id>`. */
export class DiskVault implements EvidenceVault {
  readonly where: string;
  private readonly rejectedDir: string;

  constructor(private readonly dir: string) {
    this.where = dir;
    this.rejectedDir = join(dir, "rejected");
    for (const d of [dir, this.rejectedDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
  }

  private pathOf(id: string, verdict: EvidenceVerdict): string {
    return join(verdict === "verified" ? this.dir : this.rejectedDir, id);
  }

  async keep(id: string, verdict: EvidenceVerdict, file: string): Promise<void> {
    renameSync(file, this.pathOf(id, verdict));
  }

  async open(id: string, verdict: EvidenceVerdict): Promise<Readable> {
    const path = this.pathOf(id, verdict);
    if (!existsSync(path)) throw new DragnetError(Codes.NOT_FOUND, `the bytes of evidence ${id} are gone`);
    return createReadStream(path, { highWaterMark: 256 * 1024 });
  }
}

/** Objects `verified/<id>` and `rejected/<id>` in the JetStream object store bucket dragnet-evidence. */
export class ObjectVault implements EvidenceVault {
  readonly where = `JetStream object store ${EVIDENCE_BUCKET}`;
  private bucket?: Promise<ObjectStore>;

  constructor(
    private readonly nc: () => NatsConnection,
    private readonly replicas: number,
  ) {}

  private store(): Promise<ObjectStore> {
    this.bucket ??= new Objm(this.nc()).create(EVIDENCE_BUCKET, {
      replicas: this.replicas,
      storage: "file",
      description: "Dragnet: collected evidence (records and custody in the coordinators' store)",
    });
    this.bucket.catch(() => (this.bucket = undefined));
    return this.bucket;
  }

  async keep(id: string, verdict: EvidenceVerdict, file: string, sha256: string): Promise<void> {
    try {
      const os = await this.store();
      const info = await os.put(
        { name: `${verdict}/${id}`, metadata: { sha256 } },
        Readable.toWeb(createReadStream(file, { highWaterMark: 128 * 1024 })) as ReadableStream<Uint8Array>,
      );
      // The object store hashed what it stored (SHA-256, base64url): it must be what the coordinator hashed.
      const stored = Buffer.from(info.digest.replace(/^SHA-256=/i, ""), "base64url").toString("hex");
      if (verdict === "verified" && stored !== sha256) {
        await os.delete(`${verdict}/${id}`).catch(() => undefined);
        throw new DragnetError(
          Codes.MODULE_FAILED,
          `the object store kept evidence ${id} with SHA-256 ${stored}, not ${sha256}: not kept`,
        );
      }
    } finally {
      rmSync(file, { force: true });
    }
  }

  async open(id: string, verdict: EvidenceVerdict): Promise<Readable> {
    const os = await this.store();
    const got = await os.get(`${verdict}/${id}`);
    if (!got)
      throw new DragnetError(Codes.NOT_FOUND, `the bytes of evidence ${id} are gone from ${EVIDENCE_BUCKET}`);
    const data = Readable.fromWeb(got.data as WebReadableStream<Uint8Array>);
    // A digest the object store finds wrong at the end fails the read, as a broken disk would.
    void got.error.then(
      (err) => err && data.destroy(err),
      (err: unknown) => data.destroy(err as Error),
    );
    return data;
  }
}
