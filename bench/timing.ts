// Timing helpers shared by the benchmarks.

/** The median of some numbers (the upper one of an even count). */
export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Runs fn `warm` times untimed, then `runs` times, and returns the median wall time in ms. */
export async function medianMs(runs: number, fn: () => unknown, warm = 0): Promise<number> {
  for (let i = 0; i < warm; i++) await fn();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  return median(ms);
}
