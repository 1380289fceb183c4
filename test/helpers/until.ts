/**
 * Waits for a condition instead of sleeping a fixed time: polls `condition` every `everyMs`
 * until it returns a truthy value (which it returns), and throws naming `what` once
 * `timeoutMs` has passed. A test that waits this way is as fast as the machine allows and
 * says what never happened when it fails.
 *
 * `what` may be a function, read when the wait fails: what was seen instead (the last
 * answers, a process's exit), so that CI's reader sees the mechanism, not only the timeout.
 *
 *   await until(() => edge.registry.size === 2, 5000, 'both HA connections');
 *   const line = await until(() => logs.find((l) => l.includes('ready')));
 *   await until(ok, 10_000, () => `the origin served; got: ${attempts}`);
 */
export async function until<T>(
  condition: () => T | Promise<T>,
  timeoutMs = 5000,
  what: string | (() => string) = 'the condition',
  everyMs = 20,
): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() >= end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
