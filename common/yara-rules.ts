import { createHash } from "node:crypto";

// A yara operation's rules, named by one SHA-256 over their names and texts in
// order: what the agent reports beside its matches and what an incident's
// notebook records of the action (the rules are evidence of intent; their text
// is in the signed action).

export function rulesSha256(rules: readonly { name: string; text: string }[]): string {
  const h = createHash("sha256");
  for (const r of rules) h.update(`${r.name.length}:${r.name}${Buffer.byteLength(r.text)}:`).update(r.text);
  return h.digest("hex");
}
