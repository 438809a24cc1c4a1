import { describe, expect, it } from "vitest";
import {
  Acl,
  Codes,
  DragnetError,
  generateInvestigatorKey,
  Keyring,
  parseTarget,
  publicEntryOf,
  type TargetSubject,
  type TrustedInvestigator,
  targetMayInclude,
} from "../../common/mod.js";

// What an agent decides on its own: whose signatures count for which module,
// and whether an action's target can mean it.

const ring = Keyring.fromJson({
  investigators: [
    { ...publicEntryOf(generateInvestigatorKey("alice")), weight: 1 },
    { ...publicEntryOf(generateInvestigatorKey("bob")), weight: 1 },
    { ...publicEntryOf(generateInvestigatorKey("lead")), weight: 2 },
    { ...publicEntryOf(generateInvestigatorKey("intern")), weight: 0 },
    // Roles: an analyst who only investigates, an approver who only co-signs.
    { ...publicEntryOf(generateInvestigatorKey("analyst")), weight: 1, roles: ["investigate", "read"] },
    { ...publicEntryOf(generateInvestigatorKey("approver")), weight: 1, roles: ["approve"] },
  ],
});
const who = (...names: string[]): TrustedInvestigator[] =>
  names.map((n) => ring.entries().find((e) => e.name === n)!);

function refusal(fn: () => void): DragnetError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DragnetError) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("the ACL", () => {
  it("by default asks weight 1 of investigation and 2 of response modules", () => {
    const acl = Acl.defaults();
    expect(() => acl.enforce(["file"], who("alice"))).not.toThrow();
    expect(refusal(() => acl.enforce(["isolate"], who("alice"))).code).toBe(Codes.WEIGHT);
    expect(() => acl.enforce(["isolate"], who("alice", "bob"))).not.toThrow();
    expect(() => acl.enforce(["kill"], who("lead"))).not.toThrow();
    expect(refusal(() => acl.enforce(["collect"], who("alice", "intern"))).code).toBe(Codes.WEIGHT);
  });

  it("a default entry below two people never lowers a response module below weight 2", () => {
    const acl = new Acl({ default: { minWeight: 1 } });
    expect(acl.ruleFor("quarantine").minWeight).toBe(2);
    expect(acl.ruleFor("file").minWeight).toBe(1);
    // ...but a module's own entry is the admin's explicit choice.
    expect(new Acl({ isolate: { minWeight: 1 } }).ruleFor("isolate").minWeight).toBe(1);
  });

  it("checks every operation: one short operation refuses the whole action, naming it", () => {
    const acl = Acl.defaults();
    const err = refusal(() => acl.enforce(["file", "isolate", "file"], who("alice")));
    expect(err.message).toMatch(/^operation 2 \(isolate\) needs signatures of weight 2; it has 1 \(alice\)/);
    expect(acl.shortfall(["file", "isolate"], who("alice"))).toMatchObject({
      module: "isolate",
      required: 2,
      weight: 1,
    });
    expect(acl.shortfall(["file", "isolate"], who("alice", "bob"))).toBeUndefined();
  });

  it("with a list of investigators, only their weight counts", () => {
    const acl = Acl.fromJson(
      { collect: { minWeight: 2, investigators: ["alice", "lead"] } },
      new Set(ring.entries().map((e) => e.name)),
    );
    expect(refusal(() => acl.enforce(["collect"], who("bob"))).code).toBe(Codes.NOT_ALLOWED);
    const short = refusal(() => acl.enforce(["collect"], who("alice", "bob")));
    expect(short.code).toBe(Codes.WEIGHT);
    expect(short.message).toMatch(/it has 1 \(alice\)/);
    expect(() => acl.enforce(["collect"], who("lead"))).not.toThrow();
  });

  it("counts a key once, and says so", () => {
    const acl = new Acl({ file: { minWeight: 2 } });
    const err = refusal(() => acl.enforce(["file"], who("alice", "alice"), ["alice"]));
    expect(err.message).toMatch(/alice signed more than once, and the same investigator counts once/);
  });

  it("refuses rules naming strangers or impossible weights", () => {
    const names = new Set(["alice"]);
    expect(() => Acl.fromJson({ file: { minWeight: 1, investigators: ["mallory"] } }, names)).toThrow(
      /names "mallory", who is not in the keyring/,
    );
    expect(() => Acl.fromJson({ file: { minWeight: 0 } }, names)).toThrow(
      /minWeight must be an integer from 1/,
    );
    expect(() => Acl.fromJson({ "../x": { minWeight: 1 } }, names)).toThrow(/not a module name/);
  });
});

describe("roles in the keyring", () => {
  it("count a signature only for the modules its signer may sign; approve counts for a co-signer only", () => {
    const acl = Acl.defaults();
    // Without the respond role, an analyst's signature does not count for isolate.
    const err = refusal(() => acl.enforce(["isolate"], who("alice", "analyst")));
    expect(err.code).toBe(Codes.WEIGHT);
    expect(err.message).toMatch(
      /it has 1 \(alice\); analyst may not sign it \(the respond role, or approve for a co-signer\)/,
    );
    expect(() => acl.enforce(["file"], who("analyst"))).not.toThrow();
    // An approver co-signs (second), never submits alone (first).
    expect(() => acl.enforce(["isolate"], who("alice", "approver"))).not.toThrow();
    expect(acl.weigh("isolate", who("approver", "alice")).counted).toEqual(["alice"]);
    expect(acl.weigh("file", who("approver")).weight).toBe(0);
  });

  it("are refused when unknown; an entry without roles has all but admin", () => {
    const entry = publicEntryOf(generateInvestigatorKey("x"));
    expect(() => Keyring.fromJson({ investigators: [{ ...entry, roles: ["root"] }] })).toThrow(
      /roles must be a list of: investigate, respond, approve, read, admin/,
    );
    const plain = Keyring.fromJson({ investigators: [entry] }).entries()[0]!;
    expect([...plain.roles].sort()).toEqual(["approve", "investigate", "read", "respond"]);
  });
});

describe("an agent judging a target against itself", () => {
  const self: TargetSubject = {
    id: "01m8self000000000000000000",
    hostname: "web-1",
    os: "linux",
    arch: "x64",
    version: "1.2.0",
    addresses: ["10.0.0.5"],
    tags: { env: "prod" },
    isolated: false,
  };
  const may = (t: string) => targetMayInclude(parseTarget(t), self);
  const M = 'matched("01m8aaaaaaaaaaaaaaaaaaaaaa")';

  it("refuses only what certainly excludes it; coordinator-only clauses are unknown", () => {
    const cases: Array<[string, boolean]> = [
      ['hostname == "web-1"', true],
      ['hostname == "db-1"', false],
      [M, true],
      [`not ${M}`, true],
      [`${M} and hostname == "db-1"`, false],
      [`${M} and hostname == "web-1"`, true],
      [`${M} or hostname == "db-1"`, true],
      [`not (${M} or hostname == "web-1")`, false],
      [`not (${M} and hostname == "db-1")`, true],
      ['status == "online" and tags.env == "staging"', false],
      ["seen < 5m or ip in 192.168.0.0/16", true],
      ["ip in 192.168.0.0/16", false],
      ['not (tags.env == "prod")', false],
    ];
    for (const [target, expected] of cases) expect(may(target), target).toBe(expected);
  });
});
