import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import { Codes, signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/mod.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";
import { startNatsServer } from "../helpers/nats-server.js";

// The agent keeps its promises when things go wrong: it reconnects after the
// NATS server goes away and comes back, and a module that does not finish is
// cut off at the action's timeout.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet({ heartbeatIntervalMs: 300 });
});

afterAll(async () => {
  await fleet?.stop();
});

describe("an agent", () => {
  it("reconnects after the NATS server restarts, and answers again", async () => {
    const agent = await fleet.addAgent({ hostname: "reconnecting" });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == reconnecting")).length ? true : undefined,
    );
    const port = fleet.nats.port;
    await fleet.nats.stop();
    await new Promise((r) => setTimeout(r, 1500));
    const restarted = await startNatsServer({ port });
    fleet.nats = restarted;
    const before = Date.now();
    await eventually(async () => {
      const [a] = await fleet.api.listAgents("hostname == reconnecting");
      return a && a.lastSeenMs > before ? true : undefined;
    }, 20_000);
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"` });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_SUCCESS]);
  });

  it("stops waiting for a module at the action's timeout and reports TIMEOUT", async () => {
    // A file module that never finishes, standing in for a scan that runs too long.
    const stuck = defineModule({ ...fileModule, run: () => new Promise<never>(() => undefined) });
    const agent = await fleet.addAgent({ hostname: "stuck", modules: [stuck] });
    await eventually(async () =>
      (await fleet.api.listAgents("hostname == stuck")).length ? true : undefined,
    );
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: `id == "${agent.id}"`, timeoutMs: 500 });
    const started = Date.now();
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const { results } = await collectResults(fleet.api, body.id);
    expect(results.map((r) => r.status)).toEqual([CommandStatus.COMMAND_STATUS_TIMEOUT]);
    expect(results[0]!.problem?.code).toBe(Codes.TIMEOUT);
    expect(results[0]!.result?.operations[0]?.problem?.code).toBe(Codes.TIMEOUT);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
