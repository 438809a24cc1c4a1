import { Codes, DragnetError } from "../../../common/mod.js";
import type { AccountParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

/** What shadow says of a password (never the hash itself). */
export const PASSWORD_STATES = ["locked", "empty", "set", "expired", "none"] as const;
export type PasswordState = (typeof PASSWORD_STATES)[number];

export const DEFAULT_MAX_LOGINS = 1000;
export const MAX_LOGINS = 100_000;

export function checkAccount(p: AccountParams): void {
  optionalRegex("account: user regex", p.user);
  for (const s of p.passwordStates) {
    if (!(PASSWORD_STATES as readonly string[]).includes(s))
      throw new DragnetError(
        Codes.PARAMS,
        `account: password state "${s.slice(0, 40)}" is not one of ${PASSWORD_STATES.join(", ")}`,
      );
  }
  if (p.passwordStates.length > PASSWORD_STATES.length)
    throw new DragnetError(Codes.PARAMS, "account: password states are named more than once");
  if (p.maxLogins > MAX_LOGINS)
    throw new DragnetError(Codes.PARAMS, `account: max logins is at most ${MAX_LOGINS}, not ${p.maxLogins}`);
}
