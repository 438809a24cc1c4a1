import { Codes, DragnetError } from "../../../common/mod.js";
import type { KeyringParams } from "../../../proto/mod.js";

/** A keyring file is small: a few hundred investigators at most. */
export const MAX_KEYRING_BYTES = 256 * 1024;

/** The mode, and for an update a keyring of a sane size (its content is checked by the agent, which parses it). */
export function checkKeyring(p: KeyringParams): void {
  if (!["show", "update", "rollback"].includes(p.mode))
    throw new DragnetError(
      Codes.PARAMS,
      `keyring: mode is show, update or rollback, not "${p.mode.slice(0, 20)}"`,
    );
  if (p.mode === "update" && p.keyring.length === 0)
    throw new DragnetError(Codes.PARAMS, "keyring: an update carries the new keyring");
  if (p.mode !== "update" && p.keyring.length > 0)
    throw new DragnetError(Codes.PARAMS, `keyring: ${p.mode} carries no keyring`);
  if (p.keyring.length > MAX_KEYRING_BYTES)
    throw new DragnetError(Codes.PARAMS, `keyring: over ${MAX_KEYRING_BYTES} bytes`);
}
