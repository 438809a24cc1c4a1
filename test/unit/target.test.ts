import { describe, expect, it } from "vitest";
import {
  compareVersions,
  evaluateTarget,
  parseTarget,
  TargetParseError,
  type TargetSubject,
} from "../../common/mod.js";

const now = Date.UTC(2026, 10, 24, 12, 0, 0);

const web1: TargetSubject = {
  id: "01m8aaaaaaaaaaaaaaaaaaaaaa",
  hostname: "web-01.example",
  os: "linux",
  arch: "x64",
  version: "1.2.0",
  addresses: ["10.1.2.3", "fd00::5"],
  tags: { env: "prod", role: "web" },
  isolated: false,
  lastSeenMs: now - 30_000,
  status: "online",
};
const db1: TargetSubject = {
  id: "01m8bbbbbbbbbbbbbbbbbbbbbb",
  hostname: "db-01.example",
  os: "linux",
  arch: "arm64",
  version: "1.1.9",
  addresses: ["192.168.7.9"],
  tags: { env: "staging" },
  isolated: true,
  lastSeenMs: now - 3_600_000,
  status: "offline",
};
const mac: TargetSubject = {
  id: "01m8cccccccccccccccccccccc",
  hostname: "laptop-ann",
  os: "darwin",
  arch: "arm64",
  version: "1.3.0-rc.1",
  addresses: ["10.200.0.4"],
  tags: {},
  isolated: false,
  lastSeenMs: now - 1000,
  status: "online",
};
const fleet = [web1, db1, mac];

function select(expr: string, matched?: Record<string, string[]>): string[] {
  const ast = parseTarget(expr);
  return fleet
    .filter((a) =>
      evaluateTarget(ast, a, { now, matched: (id) => (matched?.[id] ? new Set(matched[id]) : undefined) }),
    )
    .map((a) => a.hostname);
}

describe("target expressions select agents", () => {
  it.each([
    ["all", ["web-01.example", "db-01.example", "laptop-ann"]],
    ['os == "linux"', ["web-01.example", "db-01.example"]],
    ["os == linux", ["web-01.example", "db-01.example"]],
    ["os != linux", ["laptop-ann"]],
    [`id == "${db1.id}"`, ["db-01.example"]],
    ['hostname ~ "^web-"', ["web-01.example"]],
    ["hostname !~ '\\.example$'", ["laptop-ann"]],
    ['tags.env == "prod"', ["web-01.example"]],
    ["tags.env != prod", ["db-01.example", "laptop-ann"]],
    ['os == "linux" and tags.env == "prod" and hostname ~ "^web-"', ["web-01.example"]],
    ["os == darwin or tags.env == staging", ["db-01.example", "laptop-ann"]],
    // and binds tighter than or
    ["os == darwin or os == linux and tags.env == prod", ["web-01.example", "laptop-ann"]],
    ["(os == darwin or os == linux) and tags.env == prod", ["web-01.example"]],
    ["not isolated", ["web-01.example", "laptop-ann"]],
    ["isolated", ["db-01.example"]],
    ["isolated == false and not not os == linux", ["web-01.example"]],
    ["ip in 10.0.0.0/8", ["web-01.example", "laptop-ann"]],
    ["ip in fd00::/8", ["web-01.example"]],
    ["ip == 192.168.7.9", ["db-01.example"]],
    ["seen < 5m", ["web-01.example", "laptop-ann"]],
    ["seen > 10m", ["db-01.example"]],
    ['version >= "1.2.0"', ["web-01.example", "laptop-ann"]],
    ["version < 1.2.0", ["db-01.example"]],
    ['version < "1.3.0"', ["web-01.example", "db-01.example", "laptop-ann"]],
    ["status == offline", ["db-01.example"]],
    ["arch == arm64 and not os == darwin", ["db-01.example"]],
    ["matched(01m8zzzzzzzzzzzzzzzzzzzzzz)", ["laptop-ann"]],
    ["matched(01m8yyyyyyyyyyyyyyyyyyyyyy)", []],
  ])("%s", (expr, expected) => {
    expect(select(expr, { "01m8zzzzzzzzzzzzzzzzzzzzzz": [mac.id] })).toEqual(expected);
  });

  it("compares versions numerically, pre-releases before releases", () => {
    expect(compareVersions("1.10.0", "1.9.9")).toBe(1);
    expect(compareVersions("1.2", "1.2.0")).toBe(0);
    expect(compareVersions("1.3.0-rc.1", "1.3.0")).toBe(-1);
  });
});

describe("target expressions that do not parse say where", () => {
  it.each([
    ["", 1, /empty/],
    ["os ==", 6, /expected a value after "=="/],
    ["os = linux", 4, /unexpected character "="/],
    ["color == red", 1, /unknown attribute "color"/],
    ["(os == linux", 13, /expected "\)"/],
    ["os == linux and", 16, /expected a condition/],
    ['hostname ~ "["', 12, /invalid regular expression/],
    ["ip in 10.0.0.0/33", 7, /prefix length/],
    ["ip in 300.1.1.1/8", 7, /not an IP/],
    ["seen < soon", 8, /not a duration/],
    ["os < linux", 4, /takes ==, !=, ~, !~/],
    ["os == linux linux", 13, /unexpected "linux"/],
    ['os == "linux', 7, /unterminated string/],
    ["matched(x; drop table agents)", 10, /unexpected character ";"/],
  ])("%j", (expr, position, message) => {
    let error: unknown;
    try {
      parseTarget(expr);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TargetParseError);
    const e = error as TargetParseError;
    expect(e.position + 1).toBe(position);
    expect(e.message).toMatch(message);
    expect(e.message).toContain(`position ${position}`);
  });

  it("refuses absurd nesting instead of overflowing the stack", () => {
    expect(() => parseTarget(`${"not ".repeat(500)}all`)).toThrow(/nests too deeply/);
    expect(() => parseTarget("x".repeat(5000))).toThrow(/longer than/);
  });
});

describe("target regular expressions are RE2's", () => {
  it("match in linear time: a pattern that makes a backtracking engine run for minutes is answered at once", () => {
    // Nested quantifiers over a value that almost matches: 2^n paths for a backtracking engine.
    const ast = parseTarget('status == "online" or id ~ "^([0-9a-z]+)+!"');
    const agent = { ...web1, status: "offline", id: `${"a".repeat(64)}` };
    const started = performance.now();
    for (let i = 0; i < 100; i++) expect(evaluateTarget(ast, agent, { now })).toBe(false);
    // Well bounded: JavaScript's own RegExp takes minutes over one such value of 30 characters.
    expect(performance.now() - started).toBeLessThan(2000);
    expect(evaluateTarget(ast, { ...agent, id: "abc!" }, { now })).toBe(true);
  });

  it("refuses what RE2 cannot do (backreferences, lookaround) and overlong patterns, saying where", () => {
    expect(() => parseTarget('hostname ~ "(a)\\\\1"')).toThrow(/invalid regular expression \(RE2 syntax\)/);
    expect(() => parseTarget('hostname ~ "^(?=web)"')).toThrow(/invalid regular expression \(RE2 syntax\)/);
    expect(() => parseTarget(`hostname ~ "${"a".repeat(600)}"`)).toThrow(/at most 512 characters/);
    expect(select('hostname ~ "^(web|db)-0[0-9]\\\\.example$"')).toEqual(["web-01.example", "db-01.example"]);
  });
});
