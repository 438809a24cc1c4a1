import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { agentModules, CommandRunner, ModuleRegistry, ReplayGuard } from "../../agent/mod.js";
import {
  ApiAuthenticator,
  apiAuthToken,
  Codes,
  coSign,
  DragnetError,
  generateInvestigatorKey,
  Keyring,
  parseTarget,
  publicEntryOf,
  signAction,
  signBytes,
  silentLogger,
  TargetParseError,
} from "../../common/mod.js";
import { CommandEnvelope } from "../../proto/api.js";
import { fileAction } from "../helpers/actions.js";
import { tempDir } from "../helpers/fleet.js";
import { mutate, rng } from "../helpers/fuzz.js";

// Random and mutated input into every decoder an attacker can reach on an
// agent: the command envelope (NATS), the target expression inside it, and
// the coordinator's API credentials. Each input must end in a result or a
// DragnetError with a stable code — never another exception, never a hang.
// Seeded, so a failure can be replayed.

const CODES = new Set<string>(Object.values(Codes));

function expectDragnetError(err: unknown, input: string): void {
  if (!(err instanceof DragnetError) || !CODES.has(err.code)) {
    throw new Error(`input ${input} raised ${String(err)}${err instanceof Error ? `\n${err.stack}` : ""}`);
  }
}

describe("fuzzing the agent's command decoder and checks", () => {
  const alice = generateInvestigatorKey("alice");
  const bob = generateInvestigatorKey("bob");
  const keyring = Keyring.fromJson({ investigators: [publicEntryOf(alice), publicEntryOf(bob)] });
  const runner = new CommandRunner({
    agentId: "01m8fuzz000000000000000000",
    keyring,
    modules: new ModuleRegistry(Object.values(agentModules)),
    replay: new ReplayGuard(join(tempDir(), "executed-actions"), 60_000),
    clockSkewMs: 60_000,
    stateDir: tempDir(),
    protectedPaths: [],
    log: silentLogger,
    self: () => ({
      id: "01m8fuzz000000000000000000",
      hostname: "fuzz",
      os: "linux",
      osRelease: "",
      arch: "x64",
      version: "0.1.0",
      addresses: ["127.0.0.1"],
      tags: { role: "web" },
      isolated: false,
    }),
  });
  const seeds = [
    fileAction({ paths: ["/etc"], names: ["^passwd$"], options: { maxDepth: 1, returnHashes: ["sha256"] } }),
    fileAction(
      { paths: ["/tmp", "/var"], sha256: ["00".repeat(32)] },
      { target: 'os == "linux" and tags.role == "web"' },
    ),
  ].map((body, i) =>
    CommandEnvelope.encode({
      commandId: `c${i}`,
      run: 0,
      stop: undefined,
      action: i ? coSign(signAction(body, alice), bob) : signAction(body, alice),
      sentAtMs: Date.now(),
      coordinator: "main",
    }).finish(),
  );

  const feed = (data: Uint8Array, label: string) => {
    try {
      runner.accept(runner.decode(data));
    } catch (err) {
      expectDragnetError(err, label);
    }
  };

  it("random bytes: 1500 payloads end in a refusal with a code", () => {
    const r = rng(0xd2a6);
    const started = Date.now();
    const codes = new Map<string, number>();
    for (let i = 0; i < 1500; i++) {
      const data = r.bytes(r.below(600));
      try {
        runner.accept(runner.decode(data));
        codes.set("accepted", (codes.get("accepted") ?? 0) + 1);
      } catch (err) {
        expectDragnetError(err, `random #${i} ${Buffer.from(data).toString("hex")}`);
        const code = (err as DragnetError).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    // Random bytes never make a signed action.
    expect(codes.get("accepted")).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it("mutated valid commands: 3000 variants end in acceptance or a refusal with a code", () => {
    const r = rng(0xbeef);
    const started = Date.now();
    let accepted = 0;
    const codes = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const seed = seeds[i % seeds.length]!;
      const data = mutate(seed, r);
      try {
        runner.accept(runner.decode(data));
        accepted++;
      } catch (err) {
        expectDragnetError(err, `mutant #${i} ${Buffer.from(data).toString("hex")}`);
        codes.add((err as DragnetError).code);
      }
    }
    // The mutants reach past the decoder into the signature checks.
    expect([...codes]).toEqual(expect.arrayContaining([Codes.DECODE, Codes.SIG_INVALID]));
    // Only mutations outside the signed bytes (command id, send time) can pass, and each
    // action runs at most once: at most one acceptance per seed action.
    expect(accepted).toBeLessThanOrEqual(seeds.length);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it("mutated action bodies, signed anew: 3000 reach the target, ACL and params checks and end in a result or a refusal", () => {
    // What a malicious investigator (or a buggy console) can sign: the signature holds, the content is garbage.
    const r = rng(0x51a7);
    const bodies = seeds.map((e) => CommandEnvelope.decode(e).action!.body);
    const codes = new Set<string>();
    const started = Date.now();
    for (let i = 0; i < 3000; i++) {
      const body = mutate(bodies[i % bodies.length]!, r);
      const signatures = [signBytes(body, alice), ...(i % 3 === 0 ? [signBytes(body, bob)] : [])];
      const data = CommandEnvelope.encode({
        commandId: `m${i}`,
        run: 0,
        stop: undefined,
        action: { body: Buffer.from(body), signatures },
        sentAtMs: Date.now(),
        coordinator: "main",
      }).finish();
      try {
        runner.accept(runner.decode(data));
        codes.add("accepted");
      } catch (err) {
        expectDragnetError(err, `re-signed mutant #${i} ${Buffer.from(body).toString("hex")}`);
        codes.add((err as DragnetError).code);
      }
    }
    // The mutants got past the signature into the checks behind it.
    expect([...codes]).toEqual(expect.arrayContaining([Codes.DECODE, Codes.ACTION_INVALID]));
    expect(
      [...codes].some((c) =>
        [
          Codes.PARAMS,
          Codes.TARGET_PARSE,
          Codes.TARGET_MISMATCH,
          Codes.EXPIRED,
          Codes.NOT_YET_VALID,
        ].includes(c as never),
      ),
    ).toBe(true);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it("oversized payloads are refused before decoding", () => {
    const err = (() => {
      try {
        runner.decode(new Uint8Array(2 * 1024 * 1024));
      } catch (e) {
        return e as DragnetError;
      }
    })();
    expect(err?.code).toBe(Codes.TOO_LARGE);
    feed(new Uint8Array(0), "empty");
  });
});

describe("fuzzing the target parser", () => {
  const alphabet = [
    ..."abcdefghijklmnopqrstuvwxyz0123456789 ._-*/:\"'()!=<>~,\\",
    "and ",
    "or ",
    "not ",
    "hostname",
    "tags.",
    "matched(",
    "in [",
    "]",
    "seen",
    "addresses",
    "version",
    "==",
    "!=",
    "=~",
    "/24",
    "5m",
  ];

  it("4000 random and mutated expressions parse or fail with a position, quickly", () => {
    const r = rng(0x7a59);
    const valid = [
      'os == "linux" and tags.env == "prod"',
      'not (hostname =~ "^web-[0-9]+$") or addresses in 10.0.0.0/8',
      'version >= "1.2.0" and seen < 10m',
      'matched("01m8aaaaaaaaaaaaaaaaaaaaaa") and status == "online"',
    ];
    const started = Date.now();
    for (let i = 0; i < 4000; i++) {
      let text: string;
      if (i % 2) {
        text = Array.from({ length: r.below(30) }, () => alphabet[r.below(alphabet.length)]).join("");
      } else {
        text = Buffer.from(mutate(Buffer.from(valid[i % valid.length]!), r)).toString("latin1");
      }
      const t0 = Date.now();
      try {
        parseTarget(text);
      } catch (err) {
        if (!(err instanceof TargetParseError))
          throw new Error(`${JSON.stringify(text)} raised ${String(err)}`);
        expect(err.code).toBe(Codes.TARGET_PARSE);
        expect(err.message).toMatch(/position \d+/);
      }
      expect(Date.now() - t0, JSON.stringify(text)).toBeLessThan(200);
    }
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});

describe("fuzzing API credentials", () => {
  it("2000 mutated tokens are refused as UNAUTHENTICATED, never accepted", () => {
    const alice = generateInvestigatorKey("alice");
    const auth = new ApiAuthenticator(Keyring.fromJson({ investigators: [publicEntryOf(alice)] }));
    const r = rng(0x5eed);
    const path = "/dragnet.v1.Coordinator/ListAgents";
    let accepted = 0;
    for (let i = 0; i < 2000; i++) {
      const token = apiAuthToken(alice, path);
      const mutated = Buffer.from(mutate(Buffer.from(token), r)).toString("latin1");
      try {
        auth.authenticate(mutated, path);
        accepted++;
      } catch (err) {
        expectDragnetError(err, JSON.stringify(mutated));
        expect((err as DragnetError).code).toBe(Codes.UNAUTHENTICATED);
      }
    }
    expect(accepted).toBe(0);
  });
});
