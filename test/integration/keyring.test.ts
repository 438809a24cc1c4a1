import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Agent } from "../../agent/mod.js";
import { Codes, coSign, type InvestigatorKey, newId, publicEntryOf, signAction } from "../../common/mod.js";
import { type ActionBody, CommandStatus, type Operation } from "../../proto/api.js";
import { collectResults } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// Adding and revoking an investigator on a running fleet: a signed keyring
// update, delivered as an action, checked and kept (with the previous one) by
// each agent, which trusts it from its next command on.

let fleet: TestFleet;
let agent: Agent;
let keyringFile: string;
const sleepers: ChildProcess[] = [];

/** A keyring file's text: these investigators (with their roles) and a keyring change allowed to one admin. */
function keyringText(entries: Array<{ key: InvestigatorKey; roles: string[] }>): string {
  return JSON.stringify({
    investigators: entries.map(({ key, roles }) => ({ ...publicEntryOf(key), roles })),
    acl: { default: { minWeight: 1 }, keyring: { minWeight: 1 } },
  });
}
const ADMIN = ["investigate", "respond", "approve", "read", "admin"];
const DEFAULT = ["investigate", "respond", "approve", "read"];

function action(operation: Operation): ActionBody {
  const now = Date.now();
  return {
    id: newId(now),
    name: `keyring test ${operation.module?.$case}`,
    description: "",
    target: `id == "${agent.id}"`,
    operations: [operation],
    createdAtMs: now,
    validFromMs: now,
    expiresAtMs: now + 60_000,
    timeoutMs: 20_000,
    incidentId: "",
  } as ActionBody;
}

async function run(operation: Operation, signers: InvestigatorKey[]) {
  const body = action(operation);
  let signed = signAction(body, signers[0]!);
  for (const k of signers.slice(1)) signed = coSign(signed, k);
  await fleet.api.submitAction(signed);
  const { results } = await collectResults(fleet.api, body.id);
  return results[0]!;
}

const push = (text: string) =>
  run({ module: { $case: "keyring", value: { mode: "update", keyring: Buffer.from(text) } } }, [fleet.alice]);

function sleeper(): ChildProcess {
  const child = spawn("sleep", ["300"], { stdio: "ignore" });
  sleepers.push(child);
  return child;
}
const kill = (pid: number) =>
  run(
    { module: { $case: "kill", value: { pid, expectName: "^sleep$", expectExeSha256: "", signal: "KILL" } } },
    [fleet.alice, fleet.bob],
  );

beforeAll(async () => {
  // The coordinator knows alice and bob; a keyring change there takes one admin too.
  fleet = await startFleet({ agents: 0, acl: { keyring: { minWeight: 1 } } });
  // The agent starts knowing alice alone.
  keyringFile = join(fleet.dir, "agent-keyring.json");
  writeFileSync(keyringFile, keyringText([{ key: fleet.alice, roles: ADMIN }]), { mode: 0o644 });
  agent = await fleet.addAgent({ hostname: "keyring-1", keyring: keyringFile });
  await eventually(async () =>
    (await fleet.api.listAgents(`id == "${agent.id}"`)).length ? true : undefined,
  );
});

afterAll(async () => {
  for (const s of sleepers) s.kill("SIGKILL");
  await fleet?.stop();
});

describe("a keyring update on a running fleet", () => {
  it("adds bob: a kill alice and bob sign is refused before and runs after", async () => {
    const before = sleeper();
    const refused = await kill(before.pid!);
    expect([refused.status, refused.problem?.code]).toEqual([
      CommandStatus.COMMAND_STATUS_REJECTED,
      Codes.SIG_UNKNOWN_KEY,
    ]);
    expect(before.exitCode).toBeNull();

    const original = readFileSync(keyringFile);
    const updated = await push(
      keyringText([
        { key: fleet.alice, roles: ADMIN },
        { key: fleet.bob, roles: DEFAULT },
      ]),
    );
    expect([updated.status, updated.problem?.message]).toEqual([
      CommandStatus.COMMAND_STATUS_SUCCESS,
      undefined,
    ]);
    const r = updated.result!.operations[0]!.module;
    expect(r?.$case).toBe("keyring");
    if (r?.$case !== "keyring") return;
    expect(r.value.investigators.map((i) => [i.name, i.keyId])).toEqual([
      ["alice", fleet.alice.keyId],
      ["bob", fleet.bob.keyId],
    ]);
    // The file the agent trusts is the one pushed; the one replaced is kept beside it.
    expect(r.value.sha256).toBe(createHash("sha256").update(readFileSync(keyringFile)).digest("hex"));
    expect(readFileSync(`${keyringFile}.previous`).equals(original)).toBe(true);
    expect(r.value.previousSha256).toBe(createHash("sha256").update(original).digest("hex"));

    const victim = sleeper();
    const killed = await kill(victim.pid!);
    expect(killed.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    await eventually(() => (victim.exitCode !== null || victim.signalCode ? true : undefined));
    expect(victim.signalCode).toBe("SIGKILL");
  });

  it("shows each agent's keyring with one signature (read-only)", async () => {
    const shown = await run(
      { module: { $case: "keyring", value: { mode: "show", keyring: Buffer.alloc(0) } } },
      [fleet.bob],
    );
    expect(shown.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    const r = shown.result!.operations[0]!.module;
    expect(r?.$case === "keyring" && r.value.investigators.map((i) => i.name)).toEqual(["alice", "bob"]);
  });

  it("refuses a keyring its admins could not change again, and one that does not parse", async () => {
    const noAdmin = await push(keyringText([{ key: fleet.bob, roles: DEFAULT }]));
    expect(noAdmin.status).toBe(CommandStatus.COMMAND_STATUS_FAILED);
    expect(JSON.stringify(noAdmin.result)).toMatch(/nobody could change it again/);
    const garbage = await push("{not json");
    expect(garbage.status).toBe(CommandStatus.COMMAND_STATUS_FAILED);
    // Still the keyring with bob: nothing was written.
    expect(JSON.parse(readFileSync(keyringFile, "utf8")).investigators).toHaveLength(2);
  });

  it("revokes bob across the fleet in one push: his signature no longer counts; a rollback brings him back", async () => {
    const revoked = await push(keyringText([{ key: fleet.alice, roles: ADMIN }]));
    expect(revoked.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    const victim = sleeper();
    const refused = await kill(victim.pid!);
    expect([refused.status, refused.problem?.code]).toEqual([
      CommandStatus.COMMAND_STATUS_REJECTED,
      Codes.SIG_UNKNOWN_KEY,
    ]);
    expect(victim.exitCode).toBeNull();
    const back = await run(
      { module: { $case: "keyring", value: { mode: "rollback", keyring: Buffer.alloc(0) } } },
      [fleet.alice],
    );
    expect(back.status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
    const r = back.result!.operations[0]!.module;
    expect(r?.$case === "keyring" && r.value.investigators.map((i) => i.name)).toEqual(["alice", "bob"]);
    expect((await kill(victim.pid!)).status).toBe(CommandStatus.COMMAND_STATUS_SUCCESS);
  });
});
