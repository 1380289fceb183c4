/**
 * Seeded randomness for generated-input tests: the same seed gives the same inputs, so a
 * failure replays.
 */

/** A small deterministic PRNG (mulberry32): numbers in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One element of `xs`, chosen by `r`. */
export const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** `bytes` in pieces of 1..max bytes, their sizes chosen by `r` (as a peer's writes arrive). */
export function split(r: () => number, bytes: Buffer, max: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const k = 1 + Math.floor(r() * max);
    out.push(bytes.subarray(i, i + k));
    i += k;
  }
  return out;
}
