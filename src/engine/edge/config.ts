/**
 * The edge's YAML file (`edge run --config edge.yml`): the same settings as the flags,
 * under the flags' names, plus flow limits for the IP path. Flags given on the command line
 * win over the file; the file wins over the defaults.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { OxyError } from '../../core/errors.js';
import { checkAdvertise } from '../transport/identity-files.js';
import type { HttpTimeouts } from '../util/http-server.js';

export interface EdgeSettingsFile {
  'tunnel-listen'?: string;
  'http-listen'?: string;
  metrics?: string;
  location?: string;
  /** HOST:PORT connectors dial to reach this edge, recorded in the edge registry (tokens name it). */
  advertise?: string;
  quic?: boolean;
  'proxy-listen'?: string;
  'proxy-protocol'?: boolean;
  /** CIDR[:PORTS] entries the forward proxy may connect to (a list, or one string). */
  'proxy-allow'?: string[];
  hooks?: string;
  'trace-hooks'?: boolean;
  'ip-tunnel-listen'?: string;
  'gue-listen'?: string;
  'dashboard-listen'?: string;
  'dashboard-tls'?: boolean;
  'dashboard-insecure'?: boolean;
  /** The store URL (sqlite:PATH, postgres://…); --store and OXY_STORE win. */
  store?: string;
  /** Worker processes (`--workers`). */
  workers?: number;
  'ip-limits'?: Partial<Record<(typeof IP_LIMITS)[number], number>>;
  /** Client timeouts of the public HTTP, proxy and metrics listeners (util/http-server.ts HTTP_TIMEOUTS). */
  'http-timeouts'?: Partial<Record<(typeof HTTP_TIMEOUT_KEYS)[number], number>>;
}

export const EDGE_DEFAULTS = {
  'tunnel-listen': '0.0.0.0:7844',
  'http-listen': '127.0.0.1:8080',
  metrics: '127.0.0.1:7845',
  location: 'local',
} as const;

/** Flow-table limits and IP fragment reassembly budgets of the IP path. */
export const HTTP_TIMEOUT_KEYS = ['headers-ms', 'request-ms', 'idle-ms', 'keep-alive-ms'] as const;

/** The file's http-timeouts as the listeners take them. */
export const httpTimeouts = (t: EdgeSettingsFile['http-timeouts']): Partial<HttpTimeouts> | undefined =>
  t && { headersMs: t['headers-ms'], requestMs: t['request-ms'], idleMs: t['idle-ms'], keepAliveMs: t['keep-alive-ms'] };

export const IP_LIMITS = [
  'max-flows',
  'max-flows-per-tenant',
  'max-flows-per-session',
  'reassembly-bytes',
  'reassembly-bytes-per-tenant',
  'reassembly-timeout-ms',
] as const;

const STRINGS = [
  'tunnel-listen',
  'http-listen',
  'metrics',
  'location',
  'advertise',
  'proxy-listen',
  'hooks',
  'ip-tunnel-listen',
  'gue-listen',
  'dashboard-listen',
  'store',
] as const;
const BOOLEANS = ['quic', 'trace-hooks', 'proxy-protocol', 'dashboard-tls', 'dashboard-insecure'] as const;

export function loadEdgeConfig(path: string): EdgeSettingsFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new OxyError('OXY_ERR_CONFIG', `Cannot read the edge config ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new OxyError('OXY_ERR_CONFIG', `The edge config ${path} must be a YAML mapping`);
  const file = raw as Record<string, unknown>;
  const bad = (key: string, want: string): never => {
    throw new OxyError('OXY_ERR_CONFIG', `In ${path}: ${key} must be ${want}`);
  };
  for (const key of Object.keys(file)) {
    if ((STRINGS as readonly string[]).includes(key)) {
      if (typeof file[key] !== 'string') bad(key, 'a string');
    } else if ((BOOLEANS as readonly string[]).includes(key)) {
      if (typeof file[key] !== 'boolean') bad(key, 'true or false');
    } else if (key === 'proxy-allow') {
      const v = file[key];
      if (typeof v === 'string') file[key] = [v];
      else if (!Array.isArray(v) || !v.every((e) => typeof e === 'string')) bad(key, 'a list of CIDR[:PORTS] strings');
    } else if (key === 'workers') {
      if (!Number.isInteger(file[key]) || (file[key] as number) < 1) bad(key, 'a positive integer');
    } else if (key === 'ip-limits' || key === 'http-timeouts') {
      const known: readonly string[] = key === 'ip-limits' ? IP_LIMITS : HTTP_TIMEOUT_KEYS;
      const limits = file[key];
      if (typeof limits !== 'object' || limits === null) bad(key, 'a mapping');
      for (const [k, v] of Object.entries(limits as object)) {
        if (!known.includes(k)) bad(`${key}.${k}`, `one of ${known.join(', ')}`);
        if (!Number.isInteger(v) || (v as number) <= 0) bad(`${key}.${k}`, 'a positive integer');
      }
    } else {
      throw new OxyError(
        'OXY_ERR_CONFIG',
        `In ${path}: unknown key ${key} (known: ${[...STRINGS, ...BOOLEANS, 'proxy-allow', 'workers', 'ip-limits', 'http-timeouts'].join(', ')})`,
      );
    }
  }
  if (typeof file.advertise === 'string') checkAdvertise(file.advertise, `In ${path}: advertise`);
  return file as EdgeSettingsFile;
}
