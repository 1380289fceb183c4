/**
 * Ingress rules, as cloudflared has them: an ordered list of (hostname, path) → service,
 * whose last rule must match everything. The connector picks the first rule that matches
 * a request's Host and path. Texts of validation errors are cloudflared's.
 */
import { OxyError } from '../../core/errors.js';
import { matchHost } from '../../core/host-match.js';
import { parseDuration } from './duration.js';


/** Per-rule settings for talking to the origin (cloudflared's originRequest). */
export interface OriginRequest {
  connectTimeoutMs: number;
  tlsTimeoutMs: number;
  tcpKeepAliveMs: number;
  keepAliveConnections: number;
  keepAliveTimeoutMs: number;
  httpHostHeader?: string;
  originServerName?: string;
  caPool?: string;
  noTLSVerify: boolean;
  disableChunkedEncoding: boolean;
  http2Origin: boolean;
}

export const DEFAULT_ORIGIN_REQUEST: OriginRequest = {
  connectTimeoutMs: 30_000,
  tlsTimeoutMs: 10_000,
  tcpKeepAliveMs: 30_000,
  keepAliveConnections: 100,
  keepAliveTimeoutMs: 90_000,
  noTLSVerify: false,
  disableChunkedEncoding: false,
  http2Origin: false,
};

export type OriginService =
  | { kind: 'http'; url: URL }
  | { kind: 'unix'; path: string; tls: boolean }
  | { kind: 'tcp'; host: string; port: number; scheme: string }
  | { kind: 'http_status'; status: number }
  | { kind: 'hello_world' };

export interface IngressRule {
  /** 1-based, as cloudflared numbers rules in messages. */
  index: number;
  hostname?: string;
  path?: RegExp;
  /** The path regex as written in the config. */
  pathText?: string;
  service: OriginService;
  /** The service as written in the config. */
  serviceText: string;
  originRequest: OriginRequest;
}

/** What config.yml holds under `ingress:` (and `originRequest:` for defaults). */
export interface UnvalidatedRule {
  hostname?: string;
  path?: string;
  service?: string;
  originRequest?: Record<string, unknown>;
}

const fail = (message: string): never => {
  throw new OxyError('OXY_ERR_INGRESS_INVALID', message);
};

const ORIGIN_REQUEST_KEYS: Record<string, (o: OriginRequest, v: unknown) => void> = {
  connectTimeout: (o, v) => (o.connectTimeoutMs = parseDuration(v as string, 'connectTimeout')),
  tlsTimeout: (o, v) => (o.tlsTimeoutMs = parseDuration(v as string, 'tlsTimeout')),
  tcpKeepAlive: (o, v) => (o.tcpKeepAliveMs = parseDuration(v as string, 'tcpKeepAlive')),
  keepAliveConnections: (o, v) => (o.keepAliveConnections = Number(v)),
  keepAliveTimeout: (o, v) => (o.keepAliveTimeoutMs = parseDuration(v as string, 'keepAliveTimeout')),
  httpHostHeader: (o, v) => (o.httpHostHeader = String(v)),
  originServerName: (o, v) => (o.originServerName = String(v)),
  caPool: (o, v) => (o.caPool = String(v)),
  noTLSVerify: (o, v) => (o.noTLSVerify = v === true),
  disableChunkedEncoding: (o, v) => (o.disableChunkedEncoding = v === true),
  http2Origin: (o, v) => (o.http2Origin = v === true),
};

/** Applies an originRequest block over defaults; unknown keys are returned for a warning. */
export function mergeOriginRequest(
  base: OriginRequest,
  raw: Record<string, unknown> | undefined,
  unknownKeys: string[] = [],
  where = 'originRequest',
): OriginRequest {
  const merged = { ...base };
  for (const [key, value] of Object.entries(raw ?? {})) {
    const apply = ORIGIN_REQUEST_KEYS[key];
    if (apply) apply(merged, value);
    else unknownKeys.push(`${where}.${key}`);
  }
  return merged;
}

export function parseService(text: string): OriginService {
  if (text.startsWith('unix:')) return { kind: 'unix', path: text.slice(5), tls: false };
  if (text.startsWith('unix+tls:')) return { kind: 'unix', path: text.slice(9), tls: true };
  if (text.startsWith('http_status:')) {
    const status = Number(text.slice(12));
    if (!Number.isInteger(status) || status < 100 || status > 999) fail(`invalid HTTP status: ${text.slice(12)} is not a status code (100-999)`);
    return { kind: 'http_status', status };
  }
  if (text === 'hello_world' || text === 'hello-world' || text === 'helloworld') return { kind: 'hello_world' };
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || !url.hostname || !/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    return fail(`${text} is an invalid address, please make sure it has a scheme and a hostname`);
  }
  if (url.pathname !== '/' && url.pathname !== '') {
    fail(
      `${text} is an invalid address, ingress rules don't support proxying to a different path on the origin service. ` +
        `The path will be the same as the eyeball request's path`,
    );
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme === 'http' || scheme === 'https' || scheme === 'ws' || scheme === 'wss') return { kind: 'http', url };
  if (['tcp', 'ssh', 'rdp', 'smb'].includes(scheme)) {
    const defaults: Record<string, number> = { ssh: 22, rdp: 3389, smb: 445 };
    const port = url.port ? Number(url.port) : defaults[scheme];
    if (!port) fail(`${text} is an invalid address, a tcp:// service needs a port`);
    return { kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port, scheme };
  }
  return fail(`${text} is an invalid address, the scheme ${scheme}:// is not supported (use http, https, tcp, ssh, unix: or http_status:)`);
}

export class Ingress {
  constructor(readonly rules: IngressRule[]) {}

  /** cloudflared's single-origin mode (--url / --hello-world): one catch-all rule. */
  static singleOrigin(service: string, originRequest: OriginRequest = DEFAULT_ORIGIN_REQUEST): Ingress {
    return new Ingress([{ index: 1, service: parseService(service), serviceText: service, originRequest }]);
  }

  static parse(rules: UnvalidatedRule[] | undefined, defaults?: Record<string, unknown>, unknownKeys: string[] = []): Ingress {
    if (!rules || rules.length === 0) fail("The config file doesn't contain any ingress rules");
    const base = mergeOriginRequest(DEFAULT_ORIGIN_REQUEST, defaults, unknownKeys);
    return new Ingress(
      rules!.map((r, i) => {
        for (const key of Object.keys(r)) {
          if (!['hostname', 'path', 'service', 'originRequest'].includes(key)) unknownKeys.push(`ingress[${i}].${key}`);
        }
        if (typeof r.service !== 'string' || r.service === '') fail(`Rule #${i + 1} has no service: every ingress rule needs one`);
        const service = parseService(r.service!);
        validateHostname(r, i, rules!.length);
        let path: RegExp | undefined;
        if (r.path) {
          try {
            path = new RegExp(r.path);
          } catch (err) {
            fail(`Rule #${i + 1} has an invalid regex: ${(err as Error).message}`);
          }
        }
        return {
          index: i + 1,
          hostname: r.hostname || undefined,
          path,
          pathText: r.path || undefined,
          service,
          serviceText: r.service!,
          originRequest: mergeOriginRequest(base, r.originRequest, unknownKeys, `ingress[${i}].originRequest`),
        };
      }),
    );
  }

  /** The first rule matching the request's host (port ignored) and path; the last rule catches all. */
  match(host: string, path: string): IngressRule {
    const hostname = stripPort(host).toLowerCase();
    for (const rule of this.rules) if (ruleMatches(rule, hostname, path)) return rule;
    return this.rules[this.rules.length - 1];
  }
}

function ruleMatches(rule: IngressRule, hostname: string, path: string): boolean {
  const hostOk = !rule.hostname || rule.hostname === '*' || matchHost(rule.hostname.toLowerCase(), hostname);
  return hostOk && (!rule.path || rule.path.test(path));
}

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon > 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

function validateHostname(r: UnvalidatedRule, index: number, total: number): void {
  const hostname = r.hostname ?? '';
  if (/^[^:]+:\d+$/.test(hostname) || /^\[.*\]:\d+$/.test(hostname)) fail('Hostname cannot contain a port');
  if (hostname.lastIndexOf('*') > 0) {
    fail('Hostname patterns can have at most one wildcard character ("*") and it can only be used for subdomains, e.g. "*.example.com"');
  }
  const catchAll = (hostname === '' || hostname === '*') && !r.path;
  const last = index === total - 1;
  if (last && !catchAll) fail('The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)');
  if (!last && catchAll) {
    fail(
      `Rule #${index + 1} is matching the hostname '${hostname}', but this will match every hostname, ` +
        'meaning the rules which follow it will never be triggered.',
    );
  }
}

/** cloudflared's multi-line description of a rule, as `ingress rule` prints it. */
export function describeRule(rule: IngressRule): string {
  const lines = [];
  if (rule.hostname) lines.push(`\thostname: ${rule.hostname}`);
  if (rule.pathText) lines.push(`\tpath: ${rule.pathText}`);
  lines.push(`\tservice: ${rule.serviceText}`);
  return lines.join('\n');
}
