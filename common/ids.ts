import { randomBytes } from "node:crypto";

// Crockford base32: no I, L, O, U, so ids read aloud and typed by hand survive.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

// Random bytes drawn 4 KiB at a time: a sweep of 10,000 agents makes 10,000
// command ids at once, and one call to the CSPRNG per id was a tenth of it.
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let offset = 0;

function nextRandom(): Buffer {
  if (offset + 10 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    offset = 0;
  }
  offset += 10;
  return pool.subarray(offset - 10, offset);
}

/**
 * A time-ordered id (ULID layout: 48-bit millisecond time, 80 random bits,
 * 26 base32 characters). Sorting ids sorts by creation time, and any unique
 * prefix can stand for the whole id on the command line.
 */
export function newId(now = Date.now()): string {
  return idOf(now, nextRandom());
}

/** The id of a time and 10 bytes (newId's are random; a schedule's run derives its own). */
export function idOf(timeMs: number, bytes: Uint8Array): string {
  let time = "";
  let t = Math.max(0, timeMs);
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = bytes.subarray(0, 10);
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
