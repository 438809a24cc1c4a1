import { fromSeed } from "@nats-io/nkeys";
import { describe, expect, it } from "vitest";
import {
  AGENT_JWT_HEADER,
  AGENT_SIG_HEADER,
  AgentSigner,
  AgentVerifier,
  jwtIssuer,
} from "../../common/agent-identity.js";
import { Codes, DragnetError } from "../../common/mod.js";
import { agentCreds, agentPermissions, createNatsAuthority, userCreds } from "../../common/nats-authority.js";

// What an agent sends is signed with its own NATS key and carries its JWT; the
// coordinator accepts it only as the agent the JWT names, on that agent's subject.

const authority = await createNatsAuthority();
const accountKey = fromSeed(Buffer.from(authority.accountSeed)).getPublicKey();
const headersOf = (h: Record<string, string>) => ({ get: (n: string) => h[n] ?? "" });

function codeOf(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof DragnetError) return err.code;
    throw err;
  }
  return "accepted";
}

const alpha = AgentSigner.fromCreds(await agentCreds(authority, "alpha"));
const beta = AgentSigner.fromCreds(await agentCreds(authority, "beta"));

describe("agent message signatures", () => {
  const verifier = new AgentVerifier(accountKey, "dragnet");
  const payload = Buffer.from("a heartbeat");

  it("accepts what the agent signed on its own subject; the JWT names the account that issued it", () => {
    const h = alpha.sign("dragnet.hb.alpha", payload);
    expect(codeOf(() => verifier.check("alpha", "dragnet.hb.alpha", payload, headersOf(h)))).toBe("accepted");
    expect(jwtIssuer(h[AGENT_JWT_HEADER]!)).toBe(accountKey);
  });

  it("refuses unsigned bytes (what the server publishes for a requester), naming them unsigned", () => {
    expect(codeOf(() => verifier.check("alpha", "dragnet.hb.alpha", payload, undefined))).toBe(
      Codes.AGENT_UNSIGNED,
    );
    expect(codeOf(() => verifier.check("alpha", "dragnet.hb.alpha", payload, headersOf({})))).toBe(
      Codes.AGENT_UNSIGNED,
    );
  });

  it("refuses one agent's credentials speaking for another, and any change to subject or payload", () => {
    const h = beta.sign("dragnet.hb.alpha", payload);
    expect(codeOf(() => verifier.check("alpha", "dragnet.hb.alpha", payload, headersOf(h)))).toBe(
      Codes.AGENT_SIGNATURE,
    );
    const own = alpha.sign("dragnet.res.alpha.main.x", payload);
    expect(codeOf(() => verifier.check("alpha", "dragnet.res.alpha.main.y", payload, headersOf(own)))).toBe(
      Codes.AGENT_SIGNATURE,
    );
    expect(
      codeOf(() =>
        verifier.check("alpha", "dragnet.res.alpha.main.x", Buffer.from("b heartbeat"), headersOf(own)),
      ),
    ).toBe(Codes.AGENT_SIGNATURE);
    // A signature moved onto another agent's JWT.
    const mixed = { ...own, [AGENT_JWT_HEADER]: beta.jwt };
    expect(codeOf(() => verifier.check("beta", "dragnet.res.alpha.main.x", payload, headersOf(mixed)))).toBe(
      Codes.AGENT_SIGNATURE,
    );
  });

  it("refuses credentials of another account, expired ones, and revoked ones", async () => {
    const other = await createNatsAuthority();
    const stranger = AgentSigner.fromCreds(await agentCreds(other, "alpha"));
    const h = stranger.sign("dragnet.hb.alpha", payload);
    expect(codeOf(() => verifier.check("alpha", "dragnet.hb.alpha", payload, headersOf(h)))).toBe(
      Codes.AGENT_SIGNATURE,
    );
    const expired = AgentSigner.fromCreds(
      await userCreds(authority.accountSeed, "agent-alpha", agentPermissions("alpha"), Date.now() - 1000),
    );
    const e = expired.sign("dragnet.hb.alpha", payload);
    expect(codeOf(() => verifier.check("alpha", "dragnet.hb.alpha", payload, headersOf(e)))).toBe(
      Codes.AGENT_SIGNATURE,
    );
    const revoking = new AgentVerifier(accountKey, "dragnet", Date.now, (id) => id === "alpha");
    const r = alpha.sign("dragnet.hb.alpha", payload);
    expect(codeOf(() => revoking.check("alpha", "dragnet.hb.alpha", payload, headersOf(r)))).toBe(
      Codes.AGENT_SIGNATURE,
    );
    expect(r[AGENT_SIG_HEADER]).toMatch(/^[A-Za-z0-9_-]{86}$/);
  });
});
