// Environment variables a test sets for a while: the addon and the transports read their OXY_…
// switches when a connection or socket is made, so a test sets them around that and puts back
// what was there, whatever the outcome.

/** Sets each variable (undefined: unsets it). */
export function setEnv(values: Record<string, string | undefined>): void {
  for (const [key, value] of Object.entries(values)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
}

/** The current values of `keys`, for setEnv to put back. */
export function savedEnv(keys: readonly string[]): Record<string, string | undefined> {
  return Object.fromEntries(keys.map((key) => [key, process.env[key]]));
}

/** Runs `fn` with `values` set (undefined: unset), then puts back the variables as they were. */
export async function withEnv<T>(values: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = savedEnv(Object.keys(values));
  setEnv(values);
  try {
    return await fn();
  } finally {
    setEnv(saved);
  }
}
