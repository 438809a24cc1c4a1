/**
 * For modules' long synchronous loops (reading /proc, walking a tree, trying
 * a regex): call the returned function between steps. After about `sliceMs`
 * of work it lets the event loop turn — heartbeats and other commands go on —
 * and then throws if the command was aborted meanwhile.
 */
export function timeSlicer(signal: AbortSignal, sliceMs = 10): () => Promise<void> {
  let since = performance.now();
  return async () => {
    if (performance.now() - since < sliceMs) return;
    await new Promise((r) => setImmediate(r));
    if (signal.aborted) throw signal.reason;
    since = performance.now();
  };
}
