import { renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Codes, DragnetError, VERSION } from "../../../common/mod.js";
import { currentPlatform, loadReleaseKeys, verifyRelease } from "../../../common/release.js";
import {
  type Heartbeat,
  type Release,
  ReleasePart,
  ReleaseRequest,
  type UpgradeParams,
  type UpgradeResult,
} from "../../../proto/mod.js";
import { installableExecutable } from "../../install.js";
import {
  type CoordinatorTopic,
  defineModule,
  type ModuleContext,
  type ModuleHost,
  type ModuleOutcome,
  type ModuleService,
} from "../registry.js";
import { checkUpgrade } from "./check.js";
import {
  logFileOfSelf,
  readUpgradeState,
  receiveFile,
  replaceAtomically,
  startWatchdog,
  systemdUnitOfSelf,
  UPGRADE_FILE,
  type UpgradeState,
  writeUpgradeState,
} from "./handoff.js";

// `upgrade`: run a signed release. The agent asks the coordinator that sent
// the command for it, part by part (agents have no JetStream API), checks the
// manifest's signature against the release keys of its own install config,
// then size and SHA-256, and hands over to it (handoff.ts). Its service marks a new version healthy once it is connected
// and its first heartbeat reached the server, and puts the last upgrade in
// every heartbeat.

const DEFAULT_HEALTH_TIMEOUT_MS = 60_000;
/** Past its health timeout by this much, an unfinished upgrade is taken to have been abandoned. */
const STALE_AFTER_MS = 5 * 60_000;

class UpgradeService implements ModuleService {
  /** The last upgrade as upgrade.json had it at start, or as this agent wrote it since (heartbeats read it). */
  private state?: UpgradeState;

  constructor(readonly host: ModuleHost) {}

  /** An upgrade command is between its first check and its hand-over (two may run at once). */
  busy = false;
  private marking = false;

  async start(): Promise<void> {
    this.state = readUpgradeState(this.host.stateDir);
    await this.markHealthy();
  }

  /**
   * Healthy: this version loaded its config, connected, and the server has its
   * heartbeat. Tried at start and again with each heartbeat while pending (the
   * link may have dropped just after connecting).
   */
  private async markHealthy(): Promise<void> {
    const s = this.state;
    if (s?.state !== "pending" || s.to !== VERSION || this.marking) return;
    if (this.host.linkDownSince() !== undefined) return;
    this.marking = true;
    try {
      await this.host.flushed();
      this.record({ ...s, state: "healthy", detail: undefined });
      this.host.log.info("upgrade healthy", { from: s.from, to: s.to });
      this.host.heartbeat();
    } catch (err) {
      this.host.log.warn("upgrade not marked healthy yet", { error: err });
    } finally {
      this.marking = false;
    }
  }

  async stop(): Promise<void> {}

  /** Where an upgrade stands now, for this agent and for the watchdog that reads the file. */
  record(s: UpgradeState): void {
    writeUpgradeState(this.host.stateDir, s);
    this.state = s;
  }

  /** The last upgrade, as upgrade.json has it now. */
  current(): UpgradeState | undefined {
    return this.state;
  }

  forget(): void {
    rmSync(join(this.host.stateDir, UPGRADE_FILE), { force: true });
    this.state = undefined;
  }

  describe(hb: Heartbeat): void {
    const s = this.state;
    if (!s) return;
    if (s.state === "pending") void this.markHealthy();
    hb.upgradeState = s.state;
    hb.upgradeVersion = s.to;
    hb.upgradeDetail = (s.detail ?? "").slice(0, 256);
  }
}

export const upgradeModule = defineModule<"upgrade", UpgradeService>({
  name: "upgrade",
  check: checkUpgrade,
  service: (host) => new UpgradeService(host),
  async run(params, ctx) {
    const service = ctx.service;
    if (!service)
      throw new DragnetError(Codes.MODULE_FAILED, "upgrade: the agent has not started its upgrade service");
    const base: UpgradeResult = {
      state: "current",
      fromVersion: VERSION,
      toVersion: params.version,
      sha256: "",
      size: 0,
      signer: "",
    };
    if (params.version === VERSION) return { found: false, result: base };
    // Checked and set before the first await: two upgrade commands may run at once.
    if (service.busy)
      throw new DragnetError(Codes.MODULE_FAILED, "upgrade: another upgrade is being fetched");
    service.busy = true;
    try {
      return await upgradeTo(params, ctx, service, base);
    } finally {
      service.busy = false;
    }
  },
});

async function upgradeTo(
  params: UpgradeParams,
  ctx: ModuleContext<UpgradeService>,
  service: UpgradeService,
  base: UpgradeResult,
): Promise<ModuleOutcome<"upgrade">> {
  const host = service.host;
  const earlier = service.current();
  // One at a time; an upgrade whose watchdog should long have decided (it died?) no longer blocks.
  const underWay =
    (earlier?.state === "pending" || earlier?.state === "rolling-back") &&
    Date.now() - earlier.startedAtMs < earlier.healthTimeoutMs + STALE_AFTER_MS;
  if (underWay) {
    throw new DragnetError(Codes.MODULE_FAILED, `upgrade: an upgrade to ${earlier?.to} is under way`);
  }
  if (!host.releaseKeys) {
    throw new DragnetError(
      Codes.CONFIG,
      "upgrade: this agent's config names no releaseKeys; it takes no release",
    );
  }
  const trusted = loadReleaseKeys(host.releaseKeys);
  const exe = installableExecutable();
  const ask = ctx.ask;
  if (!ask) throw new DragnetError(Codes.UNAVAILABLE, "upgrade: not connected to a coordinator");
  const fetch = releaseFetcher(ask, params.version);
  const first = await fetch(0, 0);
  const release = first.release!;
  const { manifest, signer } = verifyRelease(
    { manifest: release.manifest, signature: release.signature, keyId: release.keyId },
    trusted,
  );
  if (manifest.version !== params.version || manifest.platform !== currentPlatform()) {
    throw new DragnetError(
      Codes.SIG_INVALID,
      `upgrade: the signed manifest is for ${manifest.version} on ${manifest.platform}, not ${params.version} on ${currentPlatform()}`,
    );
  }
  const staged = join(dirname(exe), `.${basename(exe)}.${params.version}.download`);
  try {
    const got = await receiveFile(
      staged,
      releaseParts(fetch, release, manifest.size),
      manifest.size,
      ctx.signal,
    );
    if (got.size !== manifest.size || got.sha256 !== manifest.sha256) {
      throw new DragnetError(
        Codes.SIG_INVALID,
        `upgrade: the downloaded executable (${got.size} bytes, sha256 ${got.sha256}) is not the one the signed manifest names (${manifest.size} bytes, ${manifest.sha256}); refused`,
      );
    }
    ctx.signal.throwIfAborted();
    const previous = `${exe}.previous`;
    replaceAtomically(exe, previous, 0o755);
    const state: UpgradeState = {
      version: 1,
      state: "pending",
      actionId: ctx.actionId ?? "",
      from: VERSION,
      to: params.version,
      sha256: manifest.sha256,
      exe,
      previous,
      startedAtMs: Date.now(),
      healthTimeoutMs: params.healthTimeoutMs || DEFAULT_HEALTH_TIMEOUT_MS,
      args: process.argv.slice(2),
      cwd: process.cwd(),
      logFile: logFileOfSelf(),
      unit: systemdUnitOfSelf(),
      oldPid: process.pid,
    };
    service.record(state);
    renameSync(staged, exe);
    try {
      await startWatchdog(state, ctx.stateDir);
    } catch (err) {
      // Without a watchdog nobody would roll back: stay on this version (a rename needs no space).
      renameSync(previous, exe);
      service.forget();
      throw new DragnetError(
        Codes.MODULE_FAILED,
        `upgrade: could not start the watchdog: ${(err as Error).message}`,
      );
    }
    ctx.log.info("upgrade staged; restarting", {
      from: VERSION,
      to: params.version,
      sha256: manifest.sha256,
    });
    // The result goes to the outbox first; the agent then stops and the watchdog takes over.
    host.restart(`upgrade to ${params.version}`);
    return {
      found: true,
      result: {
        ...base,
        state: "staged",
        sha256: manifest.sha256,
        size: manifest.size,
        signer: signer.name,
      },
    };
  } finally {
    rmSync(staged, { force: true });
  }
}

/** Bytes asked of the coordinator at once: well under NATS' 1 MiB message. */
const PART_BYTES = 512 * 1024;
const PART_TIMEOUT_MS = 30_000;

/** Asks the coordinator for one part of a release; refuses what the coordinator refuses. */
function releaseFetcher(
  ask: (topic: CoordinatorTopic, payload: Uint8Array, timeoutMs: number) => Promise<Uint8Array>,
  version: string,
) {
  return async (offset: number, length: number): Promise<ReleasePart> => {
    const request = ReleaseRequest.encode({ version, platform: currentPlatform(), offset, length }).finish();
    const part = ReleasePart.decode(await ask("release", request, PART_TIMEOUT_MS));
    if (part.problem?.code) {
      throw new DragnetError(
        part.problem.code === Codes.NOT_FOUND ? Codes.NOT_FOUND : Codes.MODULE_FAILED,
        `upgrade: ${part.problem.message}`,
      );
    }
    if (!part.release)
      throw new DragnetError(Codes.MODULE_FAILED, "upgrade: the coordinator sent no release");
    return part;
  };
}

/** The release's bytes, part by part; each part must carry the manifest the agent verified. */
async function* releaseParts(
  fetch: (offset: number, length: number) => Promise<ReleasePart>,
  release: Release,
  size: number,
): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < size; ) {
    const part = await fetch(offset, PART_BYTES);
    if (part.release?.manifest !== release.manifest) {
      throw new DragnetError(Codes.SIG_INVALID, "upgrade: a part came with another manifest than the first");
    }
    if (part.data.length === 0) throw new DragnetError(Codes.MODULE_FAILED, `upgrade: no bytes at ${offset}`);
    offset += part.data.length;
    yield part.data;
  }
}
