import { randomUUID } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (s: string): boolean => UUID_RE.test(s);
export const newId = (): string => randomUUID();

/** RFC 3339 at second precision, as cloudflared prints times. */
export const nowRfc3339 = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The data directory: `--home`, else `OXY_HOME`, else `~/.oxyctl`. */
export function resolveHome(flag?: string): string {
  return resolve(flag || process.env.OXY_HOME || join(homedir(), '.oxyctl'));
}

/** Maps in order, one at a time: each step may depend on the ones before (one transaction, one connection). */
export async function sequentially<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await fn(item));
  return out;
}
