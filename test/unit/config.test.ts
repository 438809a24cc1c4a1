import { chmodSync, chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createAccount, fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { checkRootOnly, runsAsRoot } from "../../agent/config.js";
import { loadAgentConfig } from "../../agent/mod.js";
import { coordinatorCreds, createNatsAuthority } from "../../common/nats-authority.js";
import { natsConnectOptions, parseNatsSettings } from "../../common/nats-link.js";
import { parseCoordinatorConfig } from "../../coordinator/mod.js";
import { tempDir } from "../helpers/fleet.js";

/** A fleet account (public nkey), for configurations that name it. */
const ACCOUNT = createAccount().getPublicKey();

describe("agent configuration", () => {
  it("reads a JSON file, resolves its paths against the file, and lets flags win", () => {
    const dir = tempDir();
    const file = join(dir, "agent.json");
    writeFileSync(
      file,
      JSON.stringify({
        nats: { servers: ["nats://a:4222"] },
        stateDir: "state",
        keyring: "ring.json",
        tags: { env: "prod" },
        heartbeatIntervalMs: 5000,
      }),
    );
    const c = loadAgentConfig({ config: file, tag: ["role=web", "env=dev"] });
    expect(c.nats.servers).toEqual(["nats://a:4222"]);
    expect(c.stateDir).toBe(join(dir, "state"));
    expect(c.keyring).toBe(join(dir, "ring.json"));
    expect(c.tags).toEqual({ env: "dev", role: "web" });
    expect(c.heartbeatIntervalMs).toBe(5000);
    expect(loadAgentConfig({ config: file, nats: ["nats://b:4222"], heartbeatInterval: 2000 })).toMatchObject(
      {
        nats: { servers: ["nats://b:4222"] },
        heartbeatIntervalMs: 2000,
      },
    );
  });

  it("says what is wrong", () => {
    const dir = tempDir();
    expect(() => loadAgentConfig({ stateDir: dir, keyring: "k" })).toThrow(/no NATS server/);
    expect(() => loadAgentConfig({ nats: ["nats://x"], keyring: "k" })).toThrow(/no state directory/);
    expect(() => loadAgentConfig({ nats: ["nats://x"], stateDir: dir })).toThrow(/no keyring/);
    expect(() =>
      loadAgentConfig({ nats: ["nats://x"], stateDir: dir, keyring: "k", tag: ["novalue"] }),
    ).toThrow(/not key=value/);
    expect(() =>
      loadAgentConfig({ nats: ["nats://x"], stateDir: dir, keyring: "k", tag: ["bad key=v"] }),
    ).toThrow(/tag key/);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{not json");
    expect(() => loadAgentConfig({ config: bad })).toThrow(/not a JSON object/);
    expect(() => loadAgentConfig({ config: join(dir, "missing.json") })).toThrow(/cannot read config/);
  });
});

describe("coordinator configuration", () => {
  it("requires TLS material unless plaintext is asked for explicitly", () => {
    const base = {
      nats: { servers: ["nats://x"] },
      database: "c.db",
      keyring: "k.json",
      agentAccount: ACCOUNT,
    };
    expect(() => parseCoordinatorConfig({ ...base, grpc: { listen: "127.0.0.1:7443" } }, "/d")).toThrow(
      /grpc.cert and grpc.key are required/,
    );
    const plain = parseCoordinatorConfig(
      { ...base, grpc: { listen: "127.0.0.1:7443", insecure: true } },
      "/d",
    );
    expect(plain.grpc).toEqual({ listen: "127.0.0.1:7443", cert: undefined, key: undefined, insecure: true });
    const tls = parseCoordinatorConfig(
      { ...base, grpc: { listen: "0.0.0.0:7443", cert: "c.pem", key: "/abs/c.key" } },
      "/d",
    );
    expect(tls.grpc).toMatchObject({ cert: "/d/c.pem", key: "/abs/c.key", insecure: false });
    expect(tls.database).toBe("/d/c.db");
    expect(() => parseCoordinatorConfig({ ...base, grpc: { listen: "nope", insecure: true } }, "/d")).toThrow(
      /host:port/,
    );
    expect(() =>
      parseCoordinatorConfig(
        { ...base, grpc: { listen: "h:1", insecure: true }, registry: { offlineAfterMs: -5 } },
        "/d",
      ),
    ).toThrow(/offlineAfterMs/);
  });

  it("knows the account whose agents it trusts: agentAccount, or the issuer of its own NATS credentials", async () => {
    const grpc = { listen: "127.0.0.1:7443", insecure: true };
    const base = { nats: { servers: ["nats://x"] }, database: "c.db", keyring: "k.json", grpc };
    expect(() => parseCoordinatorConfig(base, "/d")).toThrow(
      /authenticates agents by their NATS credentials: give nats.creds .* or agentAccount/,
    );
    expect(() => parseCoordinatorConfig({ ...base, agentAccount: "UABC" }, "/d")).toThrow(/public nkey/);
    const authority = await createNatsAuthority();
    const dir = tempDir();
    const creds = join(dir, "coordinator.creds");
    writeFileSync(creds, await coordinatorCreds(authority), { mode: 0o600 });
    const fromCreds = parseCoordinatorConfig({ ...base, nats: { servers: ["nats://x"], creds } }, dir);
    expect(fromCreds.agentAccount).toBe(fromSeed(Buffer.from(authority.accountSeed)).getPublicKey());
  });
});

describe("trust files of an agent running as root", () => {
  const setup = () => {
    const dir = tempDir();
    chmodSync(dir, 0o700);
    const keyring = join(dir, "keyring.json");
    writeFileSync(keyring, "{}", { mode: 0o644 });
    return { dir, keyring };
  };

  it("accepts a keyring only root can change", () => {
    const { keyring } = setup();
    expect(() => checkRootOnly("keyring", keyring)).not.toThrow();
  });

  it("refuses a keyring its group or everyone may write, or that another user owns", () => {
    const { keyring } = setup();
    chmodSync(keyring, 0o664);
    expect(() => checkRootOnly("keyring", keyring)).toThrow(
      /keyring .* is writable by its group \(mode 664\)/,
    );
    chmodSync(keyring, 0o646);
    expect(() => checkRootOnly("keyring", keyring)).toThrow(/writable by everyone/);
    chmodSync(keyring, 0o644);
    chownSync(keyring, 1000, 1000);
    expect(() => checkRootOnly("keyring", keyring)).toThrow(/belongs to uid 1000; it must belong to root/);
  });

  it("refuses a keyring in a directory another user may write", () => {
    const { dir } = setup();
    const open = join(dir, "open");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777 & ~0o1000);
    const keyring = join(open, "keyring.json");
    writeFileSync(keyring, "{}", { mode: 0o644 });
    expect(() => checkRootOnly("keyring", keyring)).toThrow(/directory .*open is writable by everyone/);
    // Further up the path counts too: whoever can rename `nested` can swap everything below it.
    const deep = join(open, "nested", "etc");
    mkdirSync(deep, { recursive: true, mode: 0o755 });
    writeFileSync(join(deep, "keyring.json"), "{}", { mode: 0o644 });
    expect(() => checkRootOnly("keyring", join(deep, "keyring.json"))).toThrow(
      /the keyring directory .*\/open is writable by everyone/,
    );
  });

  it("loadAgentConfig applies the check to config, keyring, NATS credentials and state when it runs as root", () => {
    if (!runsAsRoot()) return expect(runsAsRoot()).toBe(false);
    const { dir, keyring } = setup();
    chmodSync(keyring, 0o666);
    expect(() =>
      loadAgentConfig({ nats: ["nats://127.0.0.1:1"], stateDir: join(dir, "s"), keyring }),
    ).toThrow(/the keyring .* is writable by everyone/);
    chmodSync(keyring, 0o644);
    const state = join(dir, "state");
    mkdirSync(state, { mode: 0o770 });
    chmodSync(state, 0o770);
    expect(() => loadAgentConfig({ nats: ["nats://127.0.0.1:1"], stateDir: state, keyring })).toThrow(
      /the state directory .*state is writable by its group/,
    );
  });

  it("NATS credentials readable by others are refused", () => {
    const { dir } = setup();
    const creds = join(dir, "agent.creds");
    writeFileSync(creds, "-----BEGIN NATS USER JWT-----\n", { mode: 0o644 });
    const settings = parseNatsSettings({ servers: ["nats://127.0.0.1:1"], creds }, dir);
    expect(() => natsConnectOptions(settings)).toThrow(/are readable by others; chmod 600 them/);
  });
});
