/**
 * Ingress rules, as cloudflared has them: an ordered list of (hostname, path) → service,
 * whose last rule must match everything. The connector picks the first rule that matches
 * a request's Host and path. Texts of validation errors are cloudflared's.
 */
import { domainToASCII } from 'node:url';
import { OxyError } from '../../core/errors.js';
import { matchHost } from '../../core/host-match.js';
import { parseDuration } from './duration.js';
import { IpAccessPolicy } from './ip-access.js';

/** Per-rule settings for talking to the origin (cloudflared's originRequest). */
export interface OriginRequest {
  connectTimeoutMs: number;
  tlsTimeoutMs: number;
  tcpKeepAliveMs: number;
  keepAliveConnections: number;
  keepAliveTimeoutMs: number;
  httpHostHeader?: string;
  originServerName?: string;
  /** TLS SNI to the origin = the Host the request carries to it (after httpHostHeader). */
  matchSNItoHost: boolean;
  caPool?: string;
  noTLSVerify: boolean;
  disableChunkedEncoding: boolean;
  http2Origin: boolean;
  /** Dial the origin's first resolved address only (no RFC 8305 racing of IPv6 and IPv4). */
  noHappyEyeballs: boolean;
  /** The rule is a bastion: each stream names its destination (Cf-Access-Jump-Destination). */
  bastionMode: boolean;
  /** 'socks': a tcp:// rule's streams speak SOCKS5 and pick their destination. */
  proxyType?: string;
  /** Destinations a socks-proxy rule may reach. */
  ipRules?: IpAccessPolicy;
}

export const DEFAULT_ORIGIN_REQUEST: OriginRequest = {
  connectTimeoutMs: 30_000,
  tlsTimeoutMs: 10_000,
  tcpKeepAliveMs: 30_000,
  keepAliveConnections: 100,
  keepAliveTimeoutMs: 90_000,
  noTLSVerify: false,
  matchSNItoHost: false,
  disableChunkedEncoding: false,
  http2Origin: false,
  noHappyEyeballs: false,
  bastionMode: false,
};

export type OriginService =
  | { kind: 'http'; url: URL }
  | { kind: 'unix'; path: string; tls: boolean }
  /** Raw TCP after an upgrade (tcp://, ssh://, rdp://, smb://, any other scheme). No port: none known for the scheme. */
  | { kind: 'tcp'; host: string; port?: number; scheme: string }
  | { kind: 'http_status'; status: number }
  | { kind: 'hello_world' }
  /** Each stream names its destination in Cf-Access-Jump-Destination. */
  | { kind: 'bastion' }
  /** Each stream speaks SOCKS5; destinations checked against the rule's ipRules. */
  | { kind: 'socks' };

export interface IngressRule {
  /** 0-based, as `tunnel ingress rule` prints it ("Matched rule #0"); validation messages say index + 1. */
  index: number;
  hostname?: string;
  /** The hostname's IDNA ASCII form when it differs (môô.example.com → xn--m-xgaa.example.com). */
  punycodeHostname?: string;
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
  matchSNItoHost: (o, v) => (o.matchSNItoHost = v === true),
  caPool: (o, v) => (o.caPool = String(v)),
  noTLSVerify: (o, v) => (o.noTLSVerify = v === true),
  disableChunkedEncoding: (o, v) => (o.disableChunkedEncoding = v === true),
  http2Origin: (o, v) => (o.http2Origin = v === true),
  noHappyEyeballs: (o, v) => (o.noHappyEyeballs = v === true),
  bastionMode: (o, v) => (o.bastionMode = v === true),
  proxyType: (o, v) => (o.proxyType = v ? String(v) : undefined),
};

/**
 * originRequest keys cloudflared knows that mean nothing here: proxyAddress/proxyPort place
 * cloudflared's own local proxy (oxyctl serves bastion and SOCKS on the stream itself),
 * `access` checks Cloudflare Access JWTs.
 */
export const NO_EFFECT_ORIGIN_KEYS = new Set(['proxyAddress', 'proxyPort', 'access']);

/** What a config says that the connector will not act on: unknown keys, and known keys without effect here. */
export interface ConfigNotes {
  unknown: string[];
  noEffect: string[];
}

export const newNotes = (): ConfigNotes => ({ unknown: [], noEffect: [] });

/** Applies an originRequest block over defaults; unknown and ineffective keys are noted for a warning. */
export function mergeOriginRequest(
  base: OriginRequest,
  raw: Record<string, unknown> | undefined,
  notes: ConfigNotes = newNotes(),
  where = 'originRequest',
): OriginRequest {
  const merged = { ...base };
  for (const [key, value] of Object.entries(raw ?? {})) {
    const apply = ORIGIN_REQUEST_KEYS[key];
    if (apply) apply(merged, value);
    else if (key === 'ipRules') merged.ipRules = IpAccessPolicy.parse(value, where);
    else if (NO_EFFECT_ORIGIN_KEYS.has(key)) {
      // Said once per key, wherever it appears.
      if (!notes.noEffect.some((n) => n.endsWith(`.${key}`))) notes.noEffect.push(`${where}.${key}`);
    } else notes.unknown.push(`${where}.${key}`);
  }
  return merged;
}

/** Ports cloudflared adds to a TCP-over-WebSocket service written without one. */
const DEFAULT_TCP_PORTS: Record<string, number> = { ssh: 22, rdp: 3389, smb: 445, tcp: 7864 };

export function parseService(text: string): OriginService {
  if (text.startsWith('unix:')) return { kind: 'unix', path: text.slice(5), tls: false };
  if (text.startsWith('unix+tls:')) return { kind: 'unix', path: text.slice(9), tls: true };
  if (text.startsWith('http_status:')) {
    const status = Number(text.slice(12));
    if (!/^\d+$/.test(text.slice(12))) fail(`invalid HTTP status code: ${text.slice(12)} is not a number`);
    if (status < 100 || status > 999) fail(`invalid HTTP status code: ${status}`);
    return { kind: 'http_status', status };
  }
  if (text === 'hello_world' || text === 'hello-world') return { kind: 'hello_world' };
  if (text === 'bastion') return { kind: 'bastion' };
  if (text === 'socks-proxy') return { kind: 'socks' };
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  const written = /^([a-z][a-z0-9+.-]*):\/\/[^/?#]*([^?#]*)/i.exec(text);
  if (!url?.hostname || !written) {
    return fail(`${text} is an invalid address, please make sure it has a scheme and a hostname`);
  }
  // As Go's url.Path: "https://localhost:8000/" has the path "/", which cloudflared refuses too.
  if (written[2] !== '') {
    fail(
      `${text} is an invalid address, ingress rules don't support proxying to a different path on the origin service. ` +
        `The path will be the same as the eyeball request's path`,
    );
  }
  const scheme = url.protocol.slice(0, -1);
  if (scheme === 'http' || scheme === 'https' || scheme === 'ws' || scheme === 'wss') return { kind: 'http', url };
  // Any other scheme is TCP over the upgraded stream, as cloudflared's tcpOverWSService.
  const port = url.port ? Number(url.port) : DEFAULT_TCP_PORTS[scheme];
  return { kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), ...(port ? { port } : {}), scheme };
}

export class Ingress {
  constructor(readonly rules: IngressRule[]) {}

  /** cloudflared's single-origin mode (--url / --hello-world): one catch-all rule. */
  static singleOrigin(service: string, originRequest: OriginRequest = DEFAULT_ORIGIN_REQUEST): Ingress {
    const parsed = service === 'bastion' || originRequest.bastionMode ? ({ kind: 'bastion' } as const) : parseService(service);
    return new Ingress([{ index: 0, service: parsed, serviceText: parsed.kind === 'bastion' ? 'bastion' : service, originRequest }]);
  }

  static parse(rules: UnvalidatedRule[] | undefined, defaults?: Record<string, unknown>, notes: ConfigNotes = newNotes()): Ingress {
    if (!Array.isArray(rules) || rules.length === 0) fail("The config file doesn't contain any ingress rules");
    const base = mergeOriginRequest(DEFAULT_ORIGIN_REQUEST, defaults, notes);
    return new Ingress(
      rules!.map((r, i) => {
        for (const key of Object.keys(r)) {
          if (!['hostname', 'path', 'service', 'originRequest'].includes(key)) notes.unknown.push(`ingress[${i}].${key}`);
        }
        const originRequest = mergeOriginRequest(base, r.originRequest, notes, `ingress[${i}].originRequest`);
        // cloudflared: `service: bastion`, or bastionMode on a rule, which then needs no service.
        const bastion = r.service === 'bastion' || originRequest.bastionMode;
        if (!bastion && (typeof r.service !== 'string' || r.service === '')) fail(`Rule #${i + 1} has no service: every ingress rule needs one`);
        const service: OriginService = bastion ? { kind: 'bastion' } : parseService(r.service!);
        if (bastion) originRequest.bastionMode = true;
        if (originRequest.ipRules && service.kind !== 'socks' && service.kind !== 'bastion' && originRequest.proxyType !== 'socks') {
          const note = 'originRequest.ipRules on rules whose destination is fixed (only socks-proxy, bastion and proxyType: socks rules use it)';
          if (!notes.noEffect.includes(note)) notes.noEffect.push(note);
        }
        validateHostname(r, i, rules!.length);
        const hostname = r.hostname || undefined;
        const ascii = hostname && hostname !== '*' ? domainToASCII(hostname) : '';
        let path: RegExp | undefined;
        if (r.path) {
          try {
            path = new RegExp(r.path);
          } catch (err) {
            fail(`Rule #${i + 1} has an invalid regex: ${(err as Error).message}`);
          }
        }
        return {
          index: i,
          hostname,
          punycodeHostname: ascii && ascii !== hostname?.toLowerCase() ? ascii : undefined,
          path,
          pathText: r.path || undefined,
          service,
          serviceText: bastion ? 'bastion' : r.service!,
          originRequest,
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

  /**
   * What `match` needs to pick `rule` (its answer for `host`) again: nothing ('any': the only
   * rule), the same host ('host': `rule` has no path and no rule before it matches the host), or
   * the path too (undefined). The connector's pumps route heads natively by this.
   */
  decidedBy(host: string, rule: IngressRule): 'any' | 'host' | undefined {
    if (this.rules.length === 1) return 'any';
    if (rule.path) return undefined;
    const hostname = stripPort(host).toLowerCase();
    for (const r of this.rules) {
      if (r === rule) return 'host';
      if (hostMatches(r, hostname)) return undefined;
    }
    return undefined;
  }
}

function hostMatches(rule: Pick<IngressRule, 'hostname' | 'punycodeHostname'>, hostname: string): boolean {
  return (
    !rule.hostname ||
    rule.hostname === '*' ||
    matchHost(rule.hostname.toLowerCase(), hostname) ||
    (rule.punycodeHostname !== undefined && matchHost(rule.punycodeHostname, hostname))
  );
}

/** cloudflared's Rule.Matches: the hostname or its punycode form, then the path regex. */
export function ruleMatches(rule: Pick<IngressRule, 'hostname' | 'punycodeHostname' | 'path'>, hostname: string, path: string): boolean {
  return hostMatches(rule, hostname) && (!rule.path || rule.path.test(path));
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
