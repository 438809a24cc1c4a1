import { CommandResult } from "../proto/mod.js";

// A result must fit in one NATS message. One that does not is cut, never
// dropped: the longest list in the operations' answers (matches, processes,
// sockets, changes...) is shortened, in proportion, until the whole encodes
// within the limit, and each cut operation says so (`truncated`, and how many
// entries were `omitted`). Only an answer whose single entries are too large
// cannot be cut; the caller then reports the command failed, saying why.

/** How deep into a module's answer lists are looked for (the answer, its entries, their fields). */
const MAX_DEPTH = 3;
const MAX_ROUNDS = 32;

/** Every array under `value`, to MAX_DEPTH levels, with a way to shorten it in place. */
function listsIn(value: unknown, depth = 0, out: unknown[][] = []): unknown[][] {
  if (depth > MAX_DEPTH || value === null || typeof value !== "object" || ArrayBuffer.isView(value))
    return out;
  if (Array.isArray(value)) {
    out.push(value);
    for (const item of value) listsIn(item, depth + 1, out);
    return out;
  }
  for (const v of Object.values(value)) listsIn(v, depth + 1, out);
  return out;
}

/** The result encoded within `maxBytes`, cut if it has to be; undefined when cutting cannot make it fit. */
export function encodeWithin(result: CommandResult, maxBytes: number): Uint8Array | undefined {
  let data = CommandResult.encode(result).finish();
  if (data.length <= maxBytes) return data;
  // Cut a copy: the result as run stays whole in memory for the log.
  const cut = CommandResult.fromPartial(result);
  for (let round = 0; round < MAX_ROUNDS && data.length > maxBytes; round++) {
    // The longest list is cut, in proportion and a little more, so that a round or two do it.
    let longest: { list: unknown[]; op: (typeof cut.operations)[number] } | undefined;
    for (const op of cut.operations) {
      for (const list of listsIn(op.module?.value)) {
        if (list.length > (longest?.list.length ?? 1)) longest = { list, op };
      }
    }
    if (!longest) return undefined;
    const { list, op } = longest;
    const to = Math.max(1, Math.floor(list.length * (maxBytes / data.length) * 0.9));
    op.omitted += list.length - to;
    op.truncated = true;
    list.length = to;
    data = CommandResult.encode(cut).finish();
  }
  return data.length <= maxBytes ? data : undefined;
}
