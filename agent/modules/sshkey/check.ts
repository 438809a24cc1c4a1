import { Codes, DragnetError } from "../../../common/mod.js";
import type { SshkeyParams } from "../../../proto/mod.js";
import { optionalRegex } from "../check-kit.js";

export const DEFAULT_MAX_KEYS = 1000;
export const MAX_KEYS = 100_000;

/** SHA-256 digests are 32 bytes: 43 base64 characters without padding. */
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
/** Key type names as OpenSSH spells them ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"…). */
const KEY_TYPE = /^[a-z0-9][a-z0-9@.-]{2,63}$/;

export function checkSshkey(p: SshkeyParams): void {
  if (p.fingerprint && !FINGERPRINT.test(p.fingerprint)) {
    throw new DragnetError(
      Codes.PARAMS,
      `sshkey: fingerprint "${p.fingerprint.slice(0, 80)}" is not a SHA256 fingerprint as ssh-keygen -lf prints it ("SHA256:" and 43 base64 characters; MD5 fingerprints are not taken)`,
    );
  }
  if (p.type && !KEY_TYPE.test(p.type)) {
    throw new DragnetError(
      Codes.PARAMS,
      `sshkey: key type "${p.type.slice(0, 80)}" is not a key type name ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"…)`,
    );
  }
  optionalRegex("sshkey: user regex", p.user);
  optionalRegex("sshkey: comment regex", p.comment);
  if (p.maxKeys > MAX_KEYS)
    throw new DragnetError(Codes.PARAMS, `sshkey: max keys is at most ${MAX_KEYS}, not ${p.maxKeys}`);
}
