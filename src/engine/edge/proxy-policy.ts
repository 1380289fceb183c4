/**
 * Where the CONNECT proxy may connect to (issue 12: it was an open relay, even to the edge's
 * own loopback /metrics). It denies by default:
 *
 * - without a hooks module and without an allow list (`--proxy-allow`), every destination is
 *   refused: an operator says what the proxy is for;
 * - with an allow list, a destination must match an entry (`CIDR` or `CIDR:PORTS`);
 * - the edge host's own addresses (loopback, unspecified, its interfaces' addresses) are
 *   refused unless an entry names a local network itself (`127.0.0.0/8:8080`); a catch-all
 *   such as `0.0.0.0/0` never opens them;
 * - the edge's own listeners (tunnel, public HTTP, metrics, the proxy) are refused always.
 *
 * The check runs on the address the egress really connects to, after DNS and hooks.
 */
import { networkInterfaces } from 'node:os';
import { OxyError } from '../../core/errors.js';
import { parseCidr, parseIp, type ParsedCidr } from '../../core/cidr.js';
import { joinHostPort } from '../../core/address.js';
import { EgressError, type EgressGuard } from './pipeline/egress.js';

export interface AllowEntry {
  text: string;
  cidr: ParsedCidr;
  /** Inclusive port ranges; empty: every port. */
  ports: [number, number][];
  /** The entry's network is itself loopback or local: it may open the edge host's own addresses. */
  local: boolean;
}

const ENTRY_RE = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::([0-9,-]+))?$/;

/** `10.0.0.0/8`, `198.18.0.1`, `127.0.0.1:8080`, `10.0.0.0/8:80,443,8000-8999`, `[2001:db8::/32]:443`. */
export function parseAllowEntry(text: string): AllowEntry {
  const fail = (why: string): never => {
    throw new OxyError(
      'OXY_ERR_PROXY_ALLOW',
      `Invalid --proxy-allow entry ${JSON.stringify(text)}: ${why}. Write CIDR or CIDR:PORTS, e.g. 198.18.0.0/15:80,443 or [2001:db8::/32]:8000-8999`,
    );
  };
  const m = ENTRY_RE.exec(text.trim());
  // A bare IPv6 address has colons: read it whole, without ports.
  const [net, portText] = m ? [m[1] ?? m[2], m[3]] : text.includes(':') && !text.includes('[') ? [text.trim(), undefined] : fail('not CIDR[:PORTS]');
  let cidr: ParsedCidr;
  try {
    cidr = parseCidr(net.includes('/') ? net : `${net}/${net.includes(':') ? 128 : 32}`);
  } catch (err) {
    return fail((err as Error).message);
  }
  const ports: [number, number][] = [];
  for (const part of portText ? portText.split(',') : []) {
    const [lo, hi = lo] = part.split('-').map(Number);
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) fail(`bad port or range ${JSON.stringify(part)}`);
    ports.push([lo, hi]);
  }
  return { text, cidr, ports, local: cidr.prefixLength > 0 && isLocalAddress(cidr.bytes) };
}

const contains = (cidr: ParsedCidr, bytes: Uint8Array): boolean => {
  if (cidr.bytes.length !== bytes.length) return false;
  const full = cidr.prefixLength >> 3;
  for (let i = 0; i < full; i++) if (cidr.bytes[i] !== bytes[i]) return false;
  const rest = cidr.prefixLength & 7;
  return rest === 0 || ((cidr.bytes[full] ^ bytes[full]) & (0xff << (8 - rest)) & 0xff) === 0;
};

let interfaceCache: { at: number; addresses: Uint8Array[] } | undefined;

/** The host's interface addresses, re-read at most every 5 s (interfaces come and go). */
function interfaceAddresses(): Uint8Array[] {
  if (!interfaceCache || Date.now() - interfaceCache.at > 5000) {
    const addresses: Uint8Array[] = [];
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) addresses.push(parseIp(a.address.replace(/%.*$/, '')).bytes);
    interfaceCache = { at: Date.now(), addresses };
  }
  return interfaceCache.addresses;
}

const LOCAL_NETS = ['127.0.0.0/8', '0.0.0.0/8', '::1/128', '::/128'].map((c) => parseCidr(c));

/** Loopback, unspecified, or an address of one of this host's interfaces. */
export function isLocalAddress(bytes: Uint8Array): boolean {
  if (LOCAL_NETS.some((n) => contains(n, bytes))) return true;
  return interfaceAddresses().some((a) => a.length === bytes.length && a.every((b, i) => b === bytes[i]));
}

export interface ProxyPolicyOptions {
  /** `--proxy-allow` entries; undefined: none given. */
  allow?: AllowEntry[];
  /** A hooks module is loaded: its egress hooks decide (the allow list, when given, still applies). */
  hooks: boolean;
  /** TCP ports the edge listens on (tunnel, public HTTP, metrics, proxy): never a destination on this host. */
  ownPorts: () => number[];
}

const deny = (message: string) => new EgressError('OXY_ERR_PROXY_DENIED', message, 403, 'destination_ip_prohibited');

/**
 * The refusal of a proxy that allows nothing at all (no allow list, no hooks that decide),
 * answered before any DNS lookup; undefined when some destination may be allowed.
 */
export const refusesEverything = (o: ProxyPolicyOptions): EgressError | undefined =>
  !o.allow && !o.hooks ? deny('This proxy allows no destinations: the edge runs without --proxy-allow or --hooks') : undefined;

/** The proxy's egress guard: undefined to connect, or the EgressError to answer with. */
export function proxyGuard(o: ProxyPolicyOptions): EgressGuard {
  return (target, via) => {
    const all = refusesEverything(o);
    if (all) return all;
    let bytes: Uint8Array;
    try {
      bytes = parseIp(target.address).bytes;
    } catch {
      return deny(`Not an IP address: ${target.address}`);
    }
    // Through a tunnel the address lives in a vnet, not on this host.
    const local = via === 'direct' && isLocalAddress(bytes);
    if (local && o.ownPorts().includes(target.port)) return deny('The proxy does not connect to the edge itself');
    if (!o.allow) return local ? deny('The proxy does not connect to the edge host; allow it with --proxy-allow 127.0.0.1:PORT') : undefined;
    const entry = o.allow.find(
      (e) => (!local || e.local) && contains(e.cidr, bytes) && (e.ports.length === 0 || e.ports.some(([lo, hi]) => target.port >= lo && target.port <= hi)),
    );
    return entry ? undefined : deny(`${joinHostPort(target.address, target.port)} is not in the proxy's allow list`);
  };
}
