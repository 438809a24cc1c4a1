import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineModule } from "../../agent/mod.js";
import { fileModule } from "../../agent/modules/file/index.js";
import { signAction } from "../../common/mod.js";
import { CommandStatus } from "../../proto/api.js";
import { collectResults, fileAction } from "../helpers/actions.js";
import { eventually, startFleet, type TestFleet } from "../helpers/fleet.js";

// The coordinator's own NATS link down longer than an action's timeout: while
// it hears nothing, no agent is to blame, so no deadline runs — the answer a
// console waits for is the agents' real one, never a TIMEOUT that later flips.

let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startFleet({ heartbeatIntervalMs: 300, resultGraceMs: 500 });
});

afterAll(async () => {
  await fleet?.stop();
});

describe("the coordinator's NATS link down past an action's timeout", () => {
  it("times nothing out meanwhile: the results produced during the outage arrive and are the only answer", async () => {
    const slow = defineModule({
      ...fileModule,
      async run(params, ctx) {
        await new Promise((r) => setTimeout(r, 1000));
        return fileModule.run(params, ctx);
      },
    });
    const agents = [
      await fleet.addAgent({ hostname: "outage-1", modules: [slow] }),
      await fleet.addAgent({ hostname: "outage-2", modules: [slow] }),
    ];
    await eventually(async () => ((await fleet.api.listAgents("hostname ~ outage")).length === 2 ? true : undefined));
    // Timeout 2 s + grace 0.5 s; the link is down 5 s.
    const body = fileAction({ paths: ["/etc/passwd"] }, { target: "hostname ~ outage", timeoutMs: 2000 });
    await fleet.api.submitAction(signAction(body, fleet.alice));
    const watching = collectResults(fleet.api, body.id);
    await eventually(async () => {
      const { results } = await fleet.api.getAction(body.id, true);
      return results.every((r) => r.status === CommandStatus.COMMAND_STATUS_RUNNING) ? true : undefined;
    });
    await fleet.restartNats(5000);
    const { results, done } = await watching;
    // What the watcher heard is all success — no TIMEOUT first — and so is what was stored.
    expect(results.map((r) => [r.agentId, r.status]).sort()).toEqual(
      agents.map((a) => [a.id, CommandStatus.COMMAND_STATUS_SUCCESS]).sort(),
    );
    expect(done!.counts).toMatchObject({ targeted: 2, success: 2, timeout: 0 });
    const stored = await fleet.api.getAction(body.id, true);
    expect(stored.results.map((r) => r.status)).toEqual([
      CommandStatus.COMMAND_STATUS_SUCCESS,
      CommandStatus.COMMAND_STATUS_SUCCESS,
    ]);
  }, 60_000);
});
