import { randomBytes, sign, verify } from "node:crypto";
import { Codes, DragnetError } from "./errors.js";
import type { Keyring } from "./keyring.js";
import type { InvestigatorKey, TrustedInvestigator } from "./keys.js";

// Investigators authenticate every API call with the same Ed25519 key that
// signs their actions: the console sends, in metadata, a token signing the
// method, the time and a fresh nonce. Nothing else has to be issued or
// distributed to investigators (no client certificates), the coordinator
// already has their public keys, and a token is good for one call to one
// method within two minutes. TLS protects the channel.

export const API_AUTH_HEADER = "x-dragnet-auth";
const CONTEXT = "dragnet-api-v1\n";
export const API_AUTH_WINDOW_MS = 120_000;

function message(method: string, at: number, nonce: string): Buffer {
  return Buffer.from(`${CONTEXT}${method}\n${at}\n${nonce}`);
}

export function apiAuthToken(key: InvestigatorKey, method: string, now = Date.now()): string {
  const nonce = randomBytes(12).toString("hex");
  const sig = sign(null, message(method, now, nonce), key.privateKey).toString("base64");
  return `v1 ${key.keyId} ${now} ${nonce} ${sig}`;
}

export class ApiAuthenticator {
  /** Nonces seen within the window, so a captured token cannot be replayed. */
  private readonly nonces = new Map<string, number>();
  private prunedAt = 0;

  constructor(
    private readonly keyring: Keyring,
    private readonly windowMs = API_AUTH_WINDOW_MS,
  ) {}

  /** The investigator a call comes from; throws UNAUTHENTICATED saying why not. */
  authenticate(token: string | undefined, method: string, now = Date.now()): TrustedInvestigator {
    const refuse = (why: string) => new DragnetError(Codes.UNAUTHENTICATED, why);
    if (!token) throw refuse("no investigator credentials: sign API calls with an investigator key (--key)");
    const parts = token.split(" ");
    if (parts.length !== 5 || parts[0] !== "v1") throw refuse("malformed credentials");
    const [, keyId, atText, nonce, sigText] = parts as [string, string, string, string, string];
    const investigator = this.keyring.get(keyId);
    if (!investigator) throw refuse(`key ${keyId.slice(0, 32)} is not an investigator the coordinator knows`);
    const at = Number(atText);
    if (!/^\d{1,16}$/.test(atText) || !Number.isSafeInteger(at) || Math.abs(now - at) > this.windowMs) {
      throw refuse("credentials are stale or from the future (check the console's clock)");
    }
    if (!/^[0-9a-f]{24}$/.test(nonce)) throw refuse("malformed credentials");
    const sig = Buffer.from(sigText, "base64");
    // Canonical base64 only: Node's decoder skips stray characters and unused bits.
    if (
      sig.length !== 64 ||
      sig.toString("base64") !== sigText ||
      !verify(null, message(method, at, nonce), investigator.publicKey, sig)
    ) {
      throw refuse(`credentials of ${investigator.name} do not verify for ${method}`);
    }
    this.prune(now);
    if (this.nonces.has(nonce)) throw refuse("credentials already used (replayed call)");
    this.nonces.set(nonce, at + this.windowMs);
    return investigator;
  }

  /** Drops nonces whose tokens are stale anyway; at most once a second, not on every call of a busy API. */
  private prune(now: number): void {
    if (this.nonces.size < 1024 || now - this.prunedAt < 1000) return;
    this.prunedAt = now;
    for (const [n, until] of this.nonces) if (until < now - this.windowMs) this.nonces.delete(n);
  }
}
