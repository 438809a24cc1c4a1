import { randomBytes } from "node:crypto";

// Crockford base32: no I, L, O, U, so ids read aloud and typed by hand survive.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/**
 * A time-ordered id (ULID layout: 48-bit millisecond time, 80 random bits,
 * 26 base32 characters). Sorting ids sorts by creation time, and any unique
 * prefix can stand for the whole id on the command line.
 */
export function newId(now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = randomBytes(10);
  let bits = 0;
  let acc = 0;
  let rest = "";
  for (const byte of random) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      rest += ALPHABET[(acc >> bits) & 31];
    }
  }
  return time + rest;
}

const ID_RE = /^[0-9a-hjkmnp-tv-z]{26}$/;

export function isId(value: string): boolean {
  return ID_RE.test(value);
}
