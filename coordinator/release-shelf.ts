import { createHash } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { Codes, DragnetError } from "../common/mod.js";
import { RELEASES_BUCKET } from "../common/nats-authority.js";
import { isVersion, MAX_RELEASE_BYTES, parseManifest, releaseObjectName } from "../common/release.js";
import type { Release, ReleasePart, ReleaseRequest } from "../proto/api.js";

// Agent releases in a JetStream object store bucket. The coordinator checks
// what it is given against the manifest (size, hash, the fields it repeats)
// before anything is stored; it cannot check the signature (agents hold the
// release keys) and does not need to: every agent does. A version, once
// published for a platform, is never replaced. Agents have no JetStream API:
// the coordinator hands a release out in parts, from a copy it keeps on disk
// (checked against the manifest once, when first asked for).

/** The most bytes of a release in one answer: well under NATS' 1 MiB message. */
const MAX_PART = 512 * 1024;

export class ReleaseShelf {
  private bucket?: Promise<ObjectStore>;

  /** Releases copied to disk, or being copied, by object name. */
  private readonly copies = new Map<string, Promise<{ release: Release; file: string }>>();

  constructor(
    private readonly nc: () => NatsConnection,
    private readonly replicas: number,
    /** Where copies of the releases agents ask for are kept. */
    private readonly cacheDir: string,
  ) {}

  /** A part of a release for an agent: the signed manifest, and up to `length` bytes from `offset`. */
  async serve(request: ReleaseRequest): Promise<ReleasePart> {
    if (!isVersion(request.version) || !/^[a-z0-9]{1,16}-[a-z0-9_]{1,16}$/.test(request.platform)) {
      throw new DragnetError(Codes.PARAMS, "release request: not a version and platform");
    }
    const { release, file } = await this.copyOf(releaseObjectName(request.platform, request.version));
    const length = Math.min(request.length, MAX_PART, Math.max(0, release.size - request.offset));
    const data = Buffer.alloc(length);
    if (length > 0) {
      const fh = await open(file, "r");
      try {
        await fh.read(data, 0, length, request.offset);
      } finally {
        await fh.close();
      }
    }
    return { release, data, problem: undefined };
  }

  private copyOf(name: string): Promise<{ release: Release; file: string }> {
    let copy = this.copies.get(name);
    if (!copy) {
      copy = this.copy(name);
      this.copies.set(name, copy);
      copy.catch(() => this.copies.delete(name));
    }
    return copy;
  }

  /** Copies a release from the object store to disk, checked against its manifest. */
  private async copy(name: string): Promise<{ release: Release; file: string }> {
    const os = await this.store();
    const info = await os.info(name);
    const m = info?.metadata;
    if (!info || !m?.manifest || !m.signature || !m.keyId) {
      throw new DragnetError(Codes.NOT_FOUND, `no release ${name} is published`);
    }
    const release = this.releaseOf(m.manifest, Buffer.from(m.signature, "base64"), m.keyId);
    mkdirSync(this.cacheDir, { recursive: true, mode: 0o700 });
    const file = join(this.cacheDir, name.replace(/[^A-Za-z0-9._-]/g, "_"));
    if (!existsSync(file)) {
      const got = await os.get(name);
      if (!got) throw new DragnetError(Codes.NOT_FOUND, `no release ${name} is published`);
      const temp = `${file}.part`;
      const hash = createHash("sha256");
      let size = 0;
      await pipeline(
        Readable.fromWeb(got.data as import("node:stream/web").ReadableStream<Uint8Array>),
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            size += chunk.length;
            hash.update(chunk);
            done(null, chunk);
          },
        }),
        createWriteStream(temp, { mode: 0o600 }),
      );
      if (size !== release.size || hash.digest("hex") !== release.sha256) {
        rmSync(temp, { force: true });
        throw new DragnetError(
          Codes.MODULE_FAILED,
          `the stored release ${name} is not what its manifest names`,
        );
      }
      renameSync(temp, file);
    }
    return { release, file };
  }

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
