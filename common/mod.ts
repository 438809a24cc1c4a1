// The public face of common/: what agent, coordinator and console share.
// (pki.ts is imported directly by the few that make certificates, so the agent
// bundle does not carry an X.509 library.)
export {
  Acl,
  type AclRule,
  aclNameOf,
  RESPONSE_MODULES,
  roleToSign,
  TWO_PERSON_MODULES,
  type WeightCheck,
} from "./acl.js";
export { API_AUTH_HEADER, ApiAuthenticator, apiAuthToken } from "./api-auth.js";
export { formatDuration, parseDuration } from "./duration.js";
export { type Code, Codes, DragnetError, describeError, problemOf } from "./errors.js";
export { replaceFile, sha256OfFile, writeFileAtomic, writeFileAtomicParts } from "./files.js";
export { isId, newId } from "./ids.js";
export { Keyring, type KeyringJson } from "./keyring.js";
export {
  checkInvestigatorName,
  DEFAULT_ROLES,
  generateInvestigatorKey,
  type InvestigatorKey,
  keyIdOf,
  loadInvestigatorKey,
  publicEntryOf,
  publicKeyFromRaw,
  ROLES,
  type Role,
  rawPublicKey,
  saveInvestigatorKey,
  type TrustedInvestigator,
} from "./keys.js";
export { createLogger, type Level, type Logger, silentLogger } from "./log.js";
export { freePort } from "./ports.js";
export {
  ACTION_SIGNING_CONTEXT,
  checkValidityWindow,
  coSign,
  MAX_ACTION_BODY_BYTES,
  signAction,
  signBytes,
  type VerifiedAction,
  verifySignedAction,
} from "./signing.js";
export { DEFAULT_COORDINATOR, DEFAULT_PREFIX, isSubjectToken, Subjects } from "./subjects.js";
export {
  compareVersions,
  evaluateTarget,
  matchedActionIds,
  parseTarget,
  type TargetContext,
  type TargetExpr,
  TargetParseError,
  type TargetSubject,
  targetMayInclude,
} from "./target.js";
export { VERSION } from "./version.js";
export { rulesSha256 } from "./yara-rules.js";
