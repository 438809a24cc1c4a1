import { Codes, DragnetError } from "../common/mod.js";

// Ids are long (26 characters); people type their first few, as with git.
// One rule for every kind of id the API takes: the whole id, or a prefix that
// only one id starts with.

/** The one id `idOrPrefix` names, given the ids that start with it (at most two are asked for). */
export async function resolvePrefix(
  kind: string,
  idOrPrefix: string,
  idsStartingWith: (prefix: string, limit: number) => Promise<string[]>,
): Promise<string> {
  const prefix = idOrPrefix.trim().toLowerCase();
  if (!/^[0-9a-z]{1,26}$/.test(prefix))
    throw new DragnetError(Codes.NOT_FOUND, `"${idOrPrefix.slice(0, 40)}" is not an ${kind} id`);
  const ids = await idsStartingWith(prefix, 2);
  if (ids.length === 0) throw new DragnetError(Codes.NOT_FOUND, `no ${kind} ${prefix}`);
  if (ids.length > 1 && ids[0] !== prefix) {
    throw new DragnetError(Codes.AMBIGUOUS, `"${prefix}" matches several ${kind}s; give more characters`);
  }
  return ids[0]!;
}
