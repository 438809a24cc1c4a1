// Agent tags (`env=prod`): what a key and a value may be, wherever tags are
// given — the agent's config and flags, enrolment tokens, the console.

const TAG_KEY_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_TAG_VALUE = 256;

/** `key=value` split at the first `=`; undefined when there is no key before one. */
export function splitTag(text: string): [string, string] | undefined {
  const eq = text.indexOf("=");
  return eq > 0 ? [text.slice(0, eq), text.slice(eq + 1)] : undefined;
}

/** Why this is not a tag, or undefined when it is one. */
export function tagProblem(key: string, value: string): string | undefined {
  if (!TAG_KEY_RE.test(key)) return `tag key "${key}" may only hold letters, digits, '_', '.', '-'`;
  if (value.length > MAX_TAG_VALUE) return `tag "${key}" has a value longer than ${MAX_TAG_VALUE} characters`;
  return undefined;
}
