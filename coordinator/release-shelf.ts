import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { Codes, DragnetError } from "../common/mod.js";
import { RELEASES_BUCKET } from "../common/nats-authority.js";
import { MAX_RELEASE_BYTES, parseManifest, releaseObjectName } from "../common/release.js";
import type { Release } from "../proto/api.js";

// Agent releases in a JetStream object store bucket that agents may read.
// The coordinator checks what it is given against the manifest (size, hash,
// the fields it repeats) before anything is stored; it cannot check the
// signature (agents hold the release keys) and does not need to: every agent
// does. A version, once published for a platform, is never replaced.

export class ReleaseShelf {
  private bucket?: Promise<ObjectStore>;

  constructor(
    private readonly nc: () => NatsConnection,
    private readonly replicas: number,
  ) {}

  private store(): Promise<ObjectStore> {
    this.bucket ??= new Objm(this.nc()).create(RELEASES_BUCKET, { replicas: this.replicas, storage: "file" });
    this.bucket.catch(() => (this.bucket = undefined));
    return this.bucket;
  }

  /** Receives the executable into a temporary file, checks it, then stores it with its signed manifest. */
  async publish(header: Release, data: AsyncIterable<Uint8Array>): Promise<Release> {
    const manifest = parseManifest(header.manifest);
    if (manifest.version !== header.version || manifest.platform !== header.platform) {
      throw new DragnetError(Codes.PARAMS, "the header's version or platform differs from its manifest");
    }
    if (header.signature.length !== 64 || !/^[0-9a-f]{16}$/.test(header.keyId)) {
      throw new DragnetError(Codes.PARAMS, "the release carries no Ed25519 signature");
    }
    const name = releaseObjectName(manifest.platform, manifest.version);
    const os = await this.store();
    if (await os.info(name)) {
      throw new DragnetError(
        Codes.PARAMS,
        `release ${manifest.version} for ${manifest.platform} is published already; a version is never replaced`,
      );
    }
    const dir = mkdtempSync(join(tmpdir(), "dragnet-release-"));
    try {
      const file = join(dir, "agent");
      const hash = createHash("sha256");
      let size = 0;
      // pipeline: a write error (a full disk) rejects here, and the file is closed whatever happens.
      await pipeline(
        Readable.from(data),
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            size += chunk.length;
            if (size > MAX_RELEASE_BYTES)
              return done(new DragnetError(Codes.TOO_LARGE, "the release is too large"));
            hash.update(chunk);
            done(null, chunk);
          },
        }),
        createWriteStream(file, { mode: 0o600 }),
      );
      const sha256 = hash.digest("hex");
      if (size !== manifest.size || sha256 !== manifest.sha256) {
        throw new DragnetError(
          Codes.PARAMS,
          `what arrived (${size} bytes, sha256 ${sha256}) is not what the manifest names (${manifest.size} bytes, ${manifest.sha256})`,
        );
      }
      await os.put(
        {
          name,
          description: `Dragnet agent ${manifest.version} for ${manifest.platform}`,
          metadata: {
            manifest: header.manifest,
            signature: Buffer.from(header.signature).toString("base64"),
            keyId: header.keyId,
          },
        },
        Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>,
      );
      return this.releaseOf(header.manifest, header.signature, header.keyId);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async list(): Promise<Release[]> {
    const os = await this.store();
    const out: Release[] = [];
    for (const info of await os.list()) {
      const m = info.metadata ?? {};
      if (!m.manifest || !m.signature || !m.keyId) continue;
      out.push(this.releaseOf(m.manifest, Buffer.from(m.signature, "base64"), m.keyId));
    }
    return out.sort((a, b) => a.version.localeCompare(b.version, "en", { numeric: true }));
  }

  private releaseOf(manifestText: string, signature: Uint8Array, keyId: string): Release {
    const m = parseManifest(manifestText);
    return {
      manifest: manifestText,
      signature: Buffer.from(signature),
      keyId,
      version: m.version,
      platform: m.platform,
      size: m.size,
      sha256: m.sha256,
    };
  }
}
