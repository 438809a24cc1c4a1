import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  utimesSync,
} from "node:fs";
import { join } from "node:path";
import { Codes, DragnetError, newId, sha256OfFile, writeFileAtomic } from "../../../common/mod.js";
import type { QuarantinedFile } from "../../../proto/mod.js";
import { modeString } from "../file/mode-string.js";
import { defineModule } from "../registry.js";
import { responseFile } from "../response-file.js";
import { checkQuarantine } from "./check.js";

// `quarantine`: take a file out of use without destroying it. It moves into
// the agent's vault (STATE/vault, root only), loses its execute bits, and a
// record keeps where it came from (path, mode, owner, mtime, SHA-256, when,
// which action); `restore` puts it back as it was, hash checked.

interface VaultRecord {
  id: string;
  originalPath: string;
  /** Numeric mode bits, to restore exactly. */
  modeBits: number;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  sha256: string;
  mtimeMs: number;
  quarantinedAtMs: number;
  actionId: string;
}

const sha256File = async (path: string) => (await sha256OfFile(path)).sha256;

/** A rename, or across filesystems a copy checked by hash and then the original removed. */
async function move(from: string, to: string, sha256: string): Promise<void> {
  try {
    renameSync(from, to);
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
  }
  copyFileSync(from, to);
  if ((await sha256File(to)) !== sha256) {
    rmSync(to, { force: true });
    throw new DragnetError(
      Codes.MODULE_FAILED,
      `the copy of ${from} does not hash as the original: nothing moved`,
    );
  }
  rmSync(from);
}

const info = (r: VaultRecord, restored = false): QuarantinedFile => ({
  id: r.id,
  originalPath: r.originalPath,
  mode: r.mode,
  uid: r.uid,
  gid: r.gid,
  size: r.size,
  sha256: r.sha256,
  mtimeMs: r.mtimeMs,
  quarantinedAtMs: r.quarantinedAtMs,
  actionId: r.actionId,
  restored,
});

export const quarantineModule = defineModule({
  name: "quarantine",
  check: checkQuarantine,
  async run(p, ctx) {
    const vault = join(ctx.stateDir, "vault");
    mkdirSync(vault, { recursive: true, mode: 0o700 });
    chmodSync(vault, 0o700);
    const recordOf = (id: string) => join(vault, `${id}.json`);
    const fileOf = (id: string) => join(vault, `${id}.bin`);
    const mode = p.mode || "quarantine";
    if (mode === "list") {
      const files = readdirSync(vault)
        .filter((f) => f.endsWith(".json"))
        .map((f) => info(JSON.parse(readFileSync(join(vault, f), "utf8")) as VaultRecord));
      return { found: files.length > 0, result: { files } };
    }
    if (mode === "restore") {
      let record: VaultRecord;
      try {
        record = JSON.parse(readFileSync(recordOf(p.id), "utf8")) as VaultRecord;
      } catch {
        throw new DragnetError(Codes.NOT_FOUND, `quarantine: no vault item ${p.id} on this agent`);
      }
      if (existsSync(record.originalPath)) {
        throw new DragnetError(
          Codes.PARAMS,
          `quarantine: ${record.originalPath} exists again; move it away before restoring item ${p.id} there`,
        );
      }
      if ((await sha256File(fileOf(p.id))) !== record.sha256) {
        throw new DragnetError(
          Codes.MODULE_FAILED,
          `quarantine: vault item ${p.id} no longer hashes as recorded: not restored`,
        );
      }
      await move(fileOf(p.id), record.originalPath, record.sha256);
      chownSync(record.originalPath, record.uid, record.gid);
      chmodSync(record.originalPath, record.modeBits);
      utimesSync(record.originalPath, new Date(), new Date(record.mtimeMs));
      rmSync(recordOf(p.id));
      return { found: true, result: { files: [info(record, true)] } };
    }
    const target = responseFile("quarantine", p.path, {
      followSymlinks: false,
      protectedPaths: ctx.protectedPaths ?? [ctx.stateDir],
    });
    const st = lstatSync(target.path);
    const id = newId();
    const record: VaultRecord = {
      id,
      originalPath: target.path,
      modeBits: st.mode & 0o7777,
      mode: modeString(st),
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      sha256: await sha256File(target.path),
      mtimeMs: Math.floor(st.mtimeMs),
      quarantinedAtMs: Date.now(),
      actionId: ctx.actionId ?? "",
    };
    // The record first: a file in the vault is never without its origin.
    writeFileAtomic(recordOf(id), `${JSON.stringify(record)}\n`, 0o600);
    try {
      await move(target.path, fileOf(id), record.sha256);
    } catch (err) {
      rmSync(recordOf(id), { force: true });
      throw err;
    }
    // No execute bits, readable by root alone: it cannot be run from the vault.
    chmodSync(fileOf(id), 0o400);
    return { found: true, result: { files: [info(record)] } };
  },
});
