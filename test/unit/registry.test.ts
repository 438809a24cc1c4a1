import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { parseTarget } from "../../common/mod.js";
import { AgentRegistry, checkHeartbeat } from "../../coordinator/registry.js";
import { AgentStatus, type Heartbeat, Heartbeat as HeartbeatMsg } from "../../proto/api.js";

function hb(id: string, overrides: Partial<Heartbeat> = {}): Heartbeat {
  return {
    agentId: id,
    hostname: `${id}.example`,
    os: "linux",
    osRelease: "Debian",
    arch: "x64",
    version: "0.1.0",
    addresses: ["10.0.0.1"],
    tags: { env: "prod" },
    isolated: false,
    startedAtMs: 1000,
    sentAtMs: 2000,
    intervalMs: 10_000,
    runningCommands: 0,
    isolatedSinceMs: 0,
    isolationActionId: "",
    upgradeState: "",
    upgradeVersion: "",
    upgradeDetail: "",
    problems: [],
    ...overrides,
  };
}

describe("agent registry", () => {
  it("keeps what the latest heartbeat says is wrong, and the agent's clock skew against the coordinator's", () => {
    const reg = new AgentRegistry({ offlineAfterMs: 300_000 });
    const t = 5_000_000;
    reg.observe(hb("a", { sentAtMs: t + 300_000, problems: ["state directory full"] }), t);
    expect(reg.get("a")).toMatchObject({ clockSkewMs: 300_000, problems: ["state directory full"] });
    reg.observe(hb("a", { sentAtMs: t + 1000 - 90_000 }), t + 1000);
    expect(reg.get("a")!.clockSkewMs).toBe(-90_000);
    expect(reg.get("a")!.problems).toBeUndefined();
    expect(() => checkHeartbeat(hb("a", { problems: Array(9).fill("x") }))).toThrow(/more than 8 problems/);
    expect(() => checkHeartbeat(hb("a", { problems: ["x".repeat(257)] }))).toThrow(/a problem is longer/);
  });

  it("keeps since when an agent is isolated on the coordinator's clock, never in the future; refuses a bad action id", () => {
    const reg = new AgentRegistry({ offlineAfterMs: 300_000 });
    const t = 5_000_000;
    // The agent's clock runs 60 s ahead: its "isolated at t-40 s (its clock)" is t-100 s here.
    reg.observe(
      hb("a", {
        isolated: true,
        sentAtMs: t + 60_000,
        isolatedSinceMs: t + 20_000,
        isolationActionId: "01abc",
      }),
      t,
    );
    expect(reg.get("a")).toMatchObject({ isolatedSinceMs: t - 40_000, isolationActionId: "01abc" });
    // A time past any Date (a stolen credential's word) becomes now, not a page that cannot draw it.
    reg.observe(hb("a", { isolated: true, sentAtMs: t, isolatedSinceMs: 9e18 }), t);
    expect(reg.get("a")!.isolatedSinceMs).toBe(t);
    reg.observe(hb("a", { isolated: false, isolatedSinceMs: t }), t);
    expect(reg.get("a")!.isolatedSinceMs).toBeUndefined();
    expect(() => checkHeartbeat(hb("a", { isolationActionId: "x".repeat(65) }))).toThrow(/not an action id/);
    expect(() => checkHeartbeat(hb("a", { isolationActionId: "../x" }))).toThrow(/not an action id/);
  });

  it("derives online, idle and offline from heartbeat age and the agent's own interval", () => {
    const reg = new AgentRegistry({ offlineAfterMs: 300_000 });
    const t = 1_000_000;
    reg.observe(hb("a"), t);
    const a = reg.get("a")!;
    expect(reg.status(a, t + 29_000)).toBe(AgentStatus.AGENT_STATUS_ONLINE);
    expect(reg.status(a, t + 31_000)).toBe(AgentStatus.AGENT_STATUS_IDLE);
    expect(reg.status(a, t + 299_000)).toBe(AgentStatus.AGENT_STATUS_IDLE);
    expect(reg.status(a, t + 301_000)).toBe(AgentStatus.AGENT_STATUS_OFFLINE);
    const fixed = new AgentRegistry({ onlineWithinMs: 5000, offlineAfterMs: 10_000 });
    fixed.observe(hb("b"), t);
    expect(fixed.status(fixed.get("b")!, t + 6000)).toBe(AgentStatus.AGENT_STATUS_IDLE);
  });

  it("notices an agent that comes back: new, restarted, or offline before", () => {
    const reg = new AgentRegistry({ offlineAfterMs: 60_000 });
    expect(reg.observe(hb("a"), 0)).toMatchObject({ cameBack: true, isNew: true });
    expect(reg.observe(hb("a"), 10_000).cameBack).toBe(false);
    expect(reg.observe(hb("a", { startedAtMs: 5000 }), 20_000).cameBack).toBe(true);
    expect(reg.observe(hb("a", { startedAtMs: 5000 }), 200_000).cameBack).toBe(true);
    // Staleness runs on the coordinator's clock, not on the time the agent claims.
    expect(reg.get("a")!.lastSeenMs).toBe(200_000);
    expect(reg.get("a")!.firstSeenMs).toBe(0);
  });

  it("selects agents with a target expression, status included", () => {
    const reg = new AgentRegistry({ offlineAfterMs: 60_000 });
    reg.observe(hb("a"), 0);
    reg.observe(hb("b", { tags: { env: "dev" } }), 100_000);
    const ids = (expr: string) => reg.select(parseTarget(expr), { now: 100_000 }).map((x) => x.id);
    expect(ids("all")).toEqual(["a", "b"]);
    expect(ids("tags.env == prod")).toEqual(["a"]);
    expect(ids("status == offline")).toEqual(["a"]);
    expect(ids("seen < 1m")).toEqual(["b"]);
  });
});

describe("64-bit integers on the wire", () => {
  it("decode to numbers, and a value beyond 2^53 refuses to decode instead of losing precision", () => {
    const ok = HeartbeatMsg.decode(HeartbeatMsg.encode(hb("a", { startedAtMs: 1_795_000_000_000 })).finish());
    expect(ok.startedAtMs).toBe(1_795_000_000_000);
    const w = new BinaryWriter();
    w.uint32((10 << 3) | 0).int64(2n ** 60n);
    expect(() => HeartbeatMsg.decode(w.finish())).toThrow(/MAX_SAFE_INTEGER/);
  });
});

describe("heartbeat bounds", () => {
  it("accepts an ordinary heartbeat and refuses oversized or absurd fields, saying which", () => {
    expect(() => checkHeartbeat(hb("a1"))).not.toThrow();
    const cases: Array<[Partial<Heartbeat>, RegExp]> = [
      [{ hostname: "h".repeat(257) }, /hostname is longer than 256 characters/],
      [{ addresses: Array(65).fill("10.0.0.1") }, /more than 64 addresses/],
      [
        { tags: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`t${i}`, "v"])) },
        /more than 64 tags/,
      ],
      [{ tags: { role: "x".repeat(257) } }, /tag role is too long/],
      [{ intervalMs: 10 * 86_400_000 }, /interval of 864000000 ms is outside/],
    ];
    for (const [overrides, reason] of cases) {
      expect(() => checkHeartbeat(hb("a1", overrides))).toThrow(reason);
    }
  });
});

describe("what a heartbeat writes", () => {
  it("writes a beat that changes nothing at most once a minute, and any change at once", () => {
    const reg = new AgentRegistry({ offlineAfterMs: 300_000 });
    expect(reg.observe(hb("a1"), 1000).persist).toBe(true);
    expect(reg.observe(hb("a1"), 11_000).persist).toBe(false);
    expect(reg.observe(hb("a1", { tags: { env: "staging" } }), 21_000).persist).toBe(true);
    expect(reg.observe(hb("a1", { tags: { env: "staging" } }), 31_000).persist).toBe(false);
    expect(reg.observe(hb("a1", { tags: { env: "staging" } }), 81_001).persist).toBe(true);
    // A restart (new start time) is written at once.
    expect(reg.observe(hb("a1", { tags: { env: "staging" }, startedAtMs: 90_000 }), 91_000).persist).toBe(
      true,
    );
    // In memory, last seen is always current.
    reg.observe(hb("a1", { tags: { env: "staging" }, startedAtMs: 90_000 }), 95_000);
    expect(reg.get("a1")!.lastSeenMs).toBe(95_000);
  });
});
