/**
 * `soon(fn)`: `fn` runs in this turn's microtask queue, as with queueMicrotask (the same V8 queue,
 * the same order), without the AsyncResource and bound function queueMicrotask makes per call —
 * for the per-flow and per-batch paths. A throw reaches the process's unhandledRejection handler
 * (src/cli/crash.ts), as queueMicrotask's reaches uncaughtException.
 */
const RESOLVED = Promise.resolve();

export function soon(fn: () => void): void {
  void RESOLVED.then(fn);
}
