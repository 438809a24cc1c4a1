// Seeded random input for fuzz tests: a failure can be replayed from its seed.

/** xorshift32: small, seeded, good enough to pick bytes. */
export function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    next,
    below: (n: number) => next() % n,
    bytes: (n: number) => Uint8Array.from({ length: n }, next),
  };
}

/** Flips, inserts, deletes, overwrites or truncates a few bytes of `input`. */
export function mutate(input: Uint8Array, r: ReturnType<typeof rng>): Uint8Array {
  const out = [...input];
  const edits = 1 + r.below(4);
  for (let i = 0; i < edits; i++) {
    const at = r.below(Math.max(out.length, 1));
    switch (r.below(5)) {
      case 0:
        out[at] = (out[at] ?? 0) ^ (1 << r.below(8));
        break;
      case 1:
        out.splice(at, 0, r.below(256));
        break;
      case 2:
        out.splice(at, 1 + r.below(8));
        break;
      case 3:
        out[at] = [0x00, 0x7f, 0x80, 0xff][r.below(4)]!;
        break;
      default:
        out.length = at;
    }
  }
  return Uint8Array.from(out);
}
