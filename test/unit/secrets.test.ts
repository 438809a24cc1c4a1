import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createAccount, createUser } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import { driftModule } from "../../agent/modules/drift/index.js";
import { maskSecrets, secretIn } from "../../agent/modules/secrets.js";
import { silentLogger } from "../../common/mod.js";
import { DriftParams, type DriftResult } from "../../proto/api.js";
import { tempDir } from "../helpers/fleet.js";

// Investigation reports where a secret is, never what it is.

const seed = Buffer.from(createAccount().getSeed()).toString();
const userSeed = Buffer.from(createUser().getSeed()).toString();
const pem = generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString();

describe("secret shapes", () => {
  it("masks NATS seeds, private keys and password hashes in text, and leaves the rest", () => {
    const text = `env SEED=${seed} user ${userSeed}; root:$6$Zk0v8Hq1$abcdefghijklmnopqrstu/vw:19000:0 ${pem} tail`;
    const masked = maskSecrets(text);
    expect(masked).not.toContain(seed);
    expect(masked).not.toContain(userSeed);
    expect(masked).not.toContain("$6$Zk0v8Hq1$abcdef");
    expect(masked).not.toMatch(/MC4CAQAwBQYDK2Vw/); // the PKCS#8 Ed25519 body
    expect(masked).toMatch(
      /^env SEED=\[redacted: NATS seed\] user \[redacted: NATS seed\]; root:\[redacted: password hash\]/,
    );
    expect(masked).toMatch(/\[redacted: private key\]\s+tail$/);
    expect(maskSecrets("nothing to hide: /etc/passwd root:x:0:0")).toBe(
      "nothing to hide: /etc/passwd root:x:0:0",
    );
  });

  it("names what a file's text or path holds", () => {
    expect(secretIn(pem)).toBe("private key");
    expect(secretIn(`-----BEGIN USER NKEY SEED-----\n${userSeed}\n`)).toBe("NATS seed");
    expect(secretIn("root:x:0:0::/root:/bin/bash\n", "/etc/passwd")).toBeUndefined();
    expect(secretIn("", "/etc/shadow")).toBe("secret file");
    expect(secretIn("", "/etc/dragnet/agent.creds")).toBe("secret file");
  });
});

describe("drift keeps no text of a secret", () => {
  it("reports a changed key file by hash, with no diff, while an ordinary file gets its diff", async () => {
    const root = tempDir("dragnet-secret-");
    const state = tempDir("dragnet-secret-state-");
    mkdirSync(join(root, "ssh"));
    writeFileSync(join(root, "ssh", "sshd_config"), "PermitRootLogin no\n");
    writeFileSync(join(root, "ssh", "host_key"), pem);
    const run = async (p: Partial<DriftParams>): Promise<DriftResult> =>
      (
        await driftModule.run(DriftParams.fromPartial({ paths: [root], ...p }), {
          signal: new AbortController().signal,
          log: silentLogger,
          stateDir: state,
        })
      ).result;
    await run({ mode: "baseline" });
    writeFileSync(join(root, "ssh", "sshd_config"), "PermitRootLogin yes\n");
    writeFileSync(
      join(root, "ssh", "host_key"),
      generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }),
    );
    const r = await run({ mode: "check" });
    const byPath = Object.fromEntries(r.changes.map((c) => [c.path.slice(root.length), c]));
    expect(byPath["/ssh/sshd_config"]!.diff).toContain("+PermitRootLogin yes");
    expect(byPath["/ssh/host_key"]!.what).toContain("content");
    expect(byPath["/ssh/host_key"]!.diff).toBe("");
    expect(JSON.stringify(r)).not.toContain("PRIVATE KEY-----\nMC");
  });
});
