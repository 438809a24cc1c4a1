import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../agent/mod.js";
import { defineModule } from "../../agent/mod.js";
import { collectModule } from "../../agent/modules/collect/index.js";
import { Codes, coSign, DragnetError, newId, signAction } from "../../common/mod.js";
import {
  type ActionBody,
  CollectParams,
  CommandStatus,
  EvidenceChunk,
  EvidenceReceipt,
} from "../../proto/api.js";
import { collectResults } from "../helpers/actions.js";
import { dragnet, requireBuild } from "../helpers/cli.js";
import { eventually, startFleet, type TestFleet, tempDir } from "../helpers/fleet.js";

// `collect` end to end: an agent hashes a 50 MB file and sends it in chunks,
// each a request the coordinator answers; the coordinator reassembles it,
// checks size and SHA-256, and keeps it; `dragnet evidence get` copies it out
// and checks it again. Uploads nobody asked for are refused and leave
// nothing; a forged upload whose bytes do not match its hash is caught and
// kept aside.

let fleet: TestFleet;
let agent: Agent;
let home: string;
const dir = tempDir("dragnet-collect-");
const sha256sum = (path: string) => execFileSync("sha256sum", [path], { encoding: "utf8" }).split(" ")[0]!;

/** A collect on one agent, valid for a minute. */
function collectBody(
  name: string,
  agentId: string,
  p: Partial<CollectParams>,
  incidentId: string,
): ActionBody {
  const now = Date.now();
  return {
    id: newId(now),
    schedule: undefined,
    name,
    target: `id == "${agentId}"`,
    operations: [{ module: { $case: "collect", value: CollectParams.fromPartial(p) } }],
    validFromMs: now - 1000,
    expiresAtMs: now + 60_000,
    timeoutMs: 60_000,
    incidentId,
    description: "",
    createdAtMs: now,
  };
}

async function collect(p: Partial<CollectParams>, incidentId = "") {
  const body = collectBody("collect test", agent.id, p, incidentId);
  const res = await fleet.api.submitAction(coSign(signAction(body, fleet.alice), fleet.bob));
  const r = (await collectResults(fleet.api, res.actionId)).results[0]!;
  const m = r.result?.operations[0]?.module;
  return {
    actionId: res.actionId,
    status: r.status,
    problem: r.problem?.message,
    file: m?.$case === "collect" ? m.value.files[0] : undefined,
    collected: m?.$case === "collect" ? m.value : undefined,
  };
}

/** The file as an agent announces it in the first chunk of an upload. */
function announced(path: string, bytes: Buffer, uploadId: string) {
  return {
    path,
    size: bytes.length,
    sha256: execFileSync("sha256sum", { input: bytes, encoding: "utf8" }).split(" ")[0]!,
    mtimeMs: 0,
    mode: "",
    uid: 0,
    gid: 0,
    chunks: 1,
    uploadId,
    evidenceId: "",
  };
}

/**
 * A collect of `path` on a new agent whose collect waits (it has not started sending), so that
 * its action stays open; the test sends chunks itself, with that agent's own credentials.
 */
async function heldCollect(hostname: string, path: string, incidentId: string) {
  let release = () => {};
  const held = new Promise<void>((r) => (release = r));
  const stalling = await fleet.addAgent({
    hostname,
    modules: [
      defineModule({
        ...collectModule,
        run: async () => {
          await held;
          throw new DragnetError(Codes.MODULE_FAILED, "stopped by the test");
        },
      }),
    ],
  });
  const body = collectBody(`collect ${path} (held)`, stalling.id, { path }, incidentId);
  const submitted = await fleet.api.submitAction(coSign(signAction(body, fleet.alice), fleet.bob));
  const { nc, sign } = await fleet.stealAgent(stalling.id);
  const subject = `dragnet.evidence.${stalling.id}.main`;
  const ask = async (c: Partial<EvidenceChunk>) => {
    const data = EvidenceChunk.encode(
      EvidenceChunk.fromPartial({ actionId: submitted.actionId, ...c }),
    ).finish();
    return EvidenceReceipt.decode(
      (await nc.request(subject, data, { headers: sign(subject, data), timeout: 10_000 })).data,
    );
  };
  return { actionId: submitted.actionId, ask, release, close: () => nc.close() };
}

beforeAll(async () => {
  requireBuild();
  fleet = await startFleet({ agents: 1 });
  agent = fleet.agents[0]!;
  home = fleet.consoleHome();
});

afterAll(async () => {
  await fleet?.stop();
});

describe("collect and evidence", () => {
  let actionId = "";
  let incident = "";

  it("a 50 MB file arrives bit-identical, hash-checked, with its origin and collectors; evidence get checks it again", async () => {
    const file = join(dir, "auth.log");
    writeFileSync(file, randomBytes(50 * 1024 * 1024));
    const expected = sha256sum(file);
    incident = (await fleet.api.openIncident("auth.log from web-7", "high")).id;
    const r = await collect({ path: file }, incident);
    actionId = r.actionId;
    expect([r.status, r.problem]).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS, undefined]);
    expect([r.file?.sha256, r.file?.size, r.file?.chunks]).toEqual([expected, 50 * 1024 * 1024, 200]);
    const item = await eventually(async () => (await fleet.api.listEvidence(incident, 10))[0]);
    expect([
      item.status,
      item.sha256,
      item.size,
      item.path,
      item.agentId,
      item.actionId,
      item.uploadId,
    ]).toEqual(["verified", expected, 50 * 1024 * 1024, file, agent.id, actionId, r.file!.uploadId]);
    expect(item.collectors.sort()).toEqual(["alice", "bob"]);
    // The result names the evidence item (what evidence get takes), not only the upload.
    expect(r.file!.evidenceId).toBe(item.id);
    const out = join(dir, "copy.log");
    const got = await dragnet(["--home", home, "evidence", "get", item.id, "--out", out]);
    expect(got.code).toBe(0);
    expect(got.stdout).toContain(`sha256 ${expected} (checked again; verified on receipt)`);
    expect(sha256sum(out)).toBe(expected);
    expect(readFileSync(out).equals(readFileSync(file))).toBe(true);
    // It never overwrites.
    const again = await dragnet(["--home", home, "evidence", "get", item.id, "--out", out]);
    expect([again.code, again.stderr]).toEqual([
      2,
      expect.stringMatching(/exists: evidence is never written over a file/),
    ]);
    // A unique prefix is enough, a stale partial download is cleared, and a wrong id is answered at once.
    const byPrefix = join(dir, "by-prefix.log");
    writeFileSync(`${byPrefix}.part`, "left by a download that was cut off");
    const prefixed = await dragnet([
      "--home",
      home,
      "evidence",
      "get",
      item.id.slice(0, 10),
      "--out",
      byPrefix,
    ]);
    expect(prefixed.code).toBe(0);
    expect(sha256sum(byPrefix)).toBe(expected);
    expect(existsSync(`${byPrefix}.part`)).toBe(false);
    const verified = await dragnet(["--home", home, "evidence", "verify", item.id.slice(0, 10)]);
    expect([verified.code, verified.stdout]).toEqual([0, `intact: sha256 ${expected}\n`]);
    const wrong = join(dir, "wrong.log");
    const started = Date.now();
    const missing = await dragnet(["--home", home, "evidence", "get", "0000000000zz", "--out", wrong]);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/no evidence 0000000000zz/)]);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect([existsSync(wrong), existsSync(`${wrong}.part`)]).toEqual([false, false]);
  }, 120_000);

  it("an upload nobody asked for is refused and leaves nothing: unannounced, for a finished action, past its size", async () => {
    // With the agent's own (stolen) credentials, signed as the agent signs.
    const { nc, sign } = await fleet.stealAgent(agent.id);
    const subject = `dragnet.evidence.${agent.id}.main`;
    const ask = async (c: Partial<EvidenceChunk>) => {
      const data = EvidenceChunk.encode(
        EvidenceChunk.fromPartial({ uploadId: newId(), actionId, ...c }),
      ).finish();
      return EvidenceReceipt.decode(
        (await nc.request(subject, data, { headers: sign(subject, data), timeout: 10_000 })).data,
      );
    };
    const file = {
      path: "/etc/passwd",
      size: 10,
      sha256: "0".repeat(64),
      mtimeMs: 0,
      mode: "",
      uid: 0,
      gid: 0,
      chunks: 1,
      evidenceId: "",
    };
    // One chunk far out, never announced: no 4 GiB sparse file, no hashing.
    const far = await ask({ offset: 4 * 1024 ** 3, data: Buffer.from("x") });
    expect(far.problem?.code).toBe(Codes.NOT_FOUND);
    // Announced, but for a collect that is over (the first test's) or never was.
    const uploadId = newId();
    const late = await ask({
      uploadId,
      offset: 0,
      data: Buffer.from("0123456789"),
      file: { ...file, uploadId },
    });
    expect([late.problem?.code, late.problem?.message]).toEqual([
      Codes.NOT_ALLOWED,
      `action ${actionId} is no running collect of this agent's: nothing to upload`,
    ]);
    const other = newId();
    const none = await ask({
      uploadId: other,
      actionId: newId(),
      offset: 0,
      data: Buffer.alloc(0),
      file: { ...file, uploadId: other },
    });
    expect(none.problem?.code).toBe(Codes.NOT_ALLOWED);
    await nc.close();
    expect(readdirSync(join(fleet.dir, "evidence", ".partial"))).toEqual([]);
    expect((await fleet.api.listEvidence(incident, 10)).map((i) => i.actionId)).toEqual([actionId]);
  });

  it("during a running collect, a chunk that does not match the agent's hash is caught: kept aside as rejected, with the reason", async () => {
    const path = join(dir, "forged.log");
    const { ask, release, close } = await heldCollect("stalling", path, incident);
    // What a corrupted (or forged) upload looks like on the wire, with the agent's own credentials.
    const good = randomBytes(300_000);
    const bad = Buffer.from(good);
    bad[123_456] ^= 0xff;
    const uploadId = newId();
    const goodHash = execFileSync("sha256sum", { input: good, encoding: "utf8" }).split(" ")[0]!;
    const file = announced(path, good, uploadId);
    expect((await ask({ uploadId, offset: 0, data: bad.subarray(0, 200_000), file })).received).toBe(200_000);
    const after = await ask({ uploadId, offset: 200_000, data: bad.subarray(200_000) });
    expect(after.received).toBe(300_000);
    const last = await ask({ uploadId, offset: 300_000, last: true, file });
    expect(last.status).toBe("rejected");
    await close();
    release();
    const item = await eventually(async () =>
      (await fleet.api.listEvidence(incident, 10)).find((i) => i.uploadId === uploadId),
    );
    expect([item.status, item.id]).toEqual(["rejected", last.evidenceId]);
    expect(item.problem).toMatch(
      new RegExp(`what arrived hashes to [0-9a-f]{64}, the agent hashed ${goodHash} before sending`),
    );
    const got = await dragnet(["--home", home, "evidence", "get", item.id, "--out", join(dir, "forged")]);
    // The rejected bytes are kept aside and can be examined: they match what arrived, not the claim.
    expect(got.code).toBe(2);
    expect(got.stderr).toMatch(/not kept/);
    expect(existsSync(join(dir, "forged"))).toBe(false);
  });

  it("takes a file sent again from its first byte (the answer did not come in time) in the abandoned upload's place, and no more files than the action asked for", async () => {
    const path = join(dir, "resent.log");
    const { ask, release, close } = await heldCollect("resending", path, "");
    const bytes = randomBytes(300_000);
    const [first, again, third] = [newId(), newId(), newId()];
    expect(
      (
        await ask({
          uploadId: first,
          offset: 0,
          data: bytes.subarray(0, 100_000),
          file: announced(path, bytes, first),
        })
      ).received,
    ).toBe(100_000);
    // The agent heard nothing in time and starts over: the same file, a new upload.
    expect(
      (
        await ask({
          uploadId: again,
          offset: 0,
          data: bytes.subarray(0, 200_000),
          file: announced(path, bytes, again),
        })
      ).received,
    ).toBe(200_000);
    // The abandoned upload is gone: a late chunk of it is refused.
    const late = await ask({ uploadId: first, offset: 100_000, data: bytes.subarray(100_000, 200_000) });
    expect(late.problem?.message).toMatch(/no upload .* \(it was never announced, or was dropped\)/);
    expect((await ask({ uploadId: again, offset: 200_000, data: bytes.subarray(200_000) })).received).toBe(
      300_000,
    );
    const done = await ask({
      uploadId: again,
      offset: 300_000,
      last: true,
      file: announced(path, bytes, again),
    });
    expect(done.status).toBe("verified");
    // The collect asked for one file, and has it: a further upload is refused.
    const more = await ask({
      uploadId: third,
      offset: 0,
      data: bytes.subarray(0, 1000),
      file: announced(path, bytes, third),
    });
    expect(more.problem?.message).toMatch(/asked this agent for 1 file\(s\), and has them/);
    await close();
    release();
    expect(readdirSync(join(fleet.dir, "evidence", ".partial"))).toEqual([]);
  });

  it("refuses symlinks (unless asked), files over the limit and the agent's own credentials, saying why", async () => {
    const file = join(dir, "small");
    writeFileSync(file, "x".repeat(5000));
    symlinkSync(file, join(dir, "link"));
    const link = await collect({ path: join(dir, "link") });
    expect(link.problem).toMatch(/is a symlink .* it is not followed unless asked \(--follow-symlinks\)/);
    const followed = await collect({ path: join(dir, "link"), followSymlinks: true });
    expect([followed.status, followed.file?.path]).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS, file]);
    const big = await collect({ path: file, maxBytes: 1000 });
    expect(big.problem).toMatch(/has 5000 bytes, over the 1000-byte limit/);
    // The keyring that decides who may command the agent is one of its own files.
    const own = await collect({ path: fleet.keyringPath });
    expect(own.problem).toMatch(/is one of the agent's own files .*never moved or sent/);
  });

  it("collects a directory: each file on its own, hashed, within max files and max bytes, saying what it left out", async () => {
    const logs = join(dir, "logs");
    mkdirSync(join(logs, "old"), { recursive: true });
    const files = {
      "a.log": "alpha\n",
      "b.log": "bravo\n".repeat(100),
      "c.txt": "not a log\n",
      "old/d.log": "delta\n",
    };
    for (const [name, text] of Object.entries(files)) writeFileSync(join(logs, name), text);
    symlinkSync("/etc/passwd", join(logs, "passwd.log"));
    const r = await collect({ path: logs, maxFiles: 2, name: "\\.log$" }, incident);
    expect(r.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    // In name order, logs only, links not followed: a.log and b.log; old/d.log is over the count.
    expect(r.collected!.files.map((f) => [f.path, f.sha256])).toEqual([
      [join(logs, "a.log"), sha256sum(join(logs, "a.log"))],
      [join(logs, "b.log"), sha256sum(join(logs, "b.log"))],
    ]);
    expect(r.collected!.skipped).toEqual([`${join(logs, "old/d.log")}: over 2 files (max files)`]);
    // Each is an evidence item of its own, and evidence get gives the file back.
    for (const f of r.collected!.files) {
      const out = join(dir, `got-${f.evidenceId}`);
      expect((await dragnet(["--home", home, "evidence", "get", f.evidenceId, "--out", out])).code).toBe(0);
      expect(readFileSync(out).equals(readFileSync(f.path))).toBe(true);
    }
    // Total bytes: b.log alone is 600 bytes — left out, and the smaller files after it still fit.
    const small = await collect({ path: logs, maxFiles: 10, maxBytes: 100, name: "\\.log$" });
    expect(small.collected!.files.map((f) => f.path)).toEqual([join(logs, "a.log"), join(logs, "old/d.log")]);
    expect(small.collected!.skipped).toContainEqual(
      `${join(logs, "b.log")}: 600 bytes would go over 100 in all (max bytes)`,
    );
  });
});
