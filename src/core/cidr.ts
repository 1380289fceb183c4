/**
 * IP address and CIDR parsing for routes: one strict grammar, one canonical spelling.
 *
 * Text is parsed with ipaddr.js, restricted to what cloudflared (Go's net.ParseIP /
 * net.ParseCIDR) accepts: IPv4 only as four-part decimal without leading zeros
 * ("10.1" and "010.0.0.1" are refused — ipaddr.js alone would read them as 10.0.0.1
 * and 8.0.0.1), IPv6 in any RFC 4291 form without a zone ("fe80::1%eth0" is refused: a
 * route has no zone). Canonical text is dotted quad for IPv4 and RFC 5952 for IPv6.
 *
 * IPv4-mapped IPv6 (::ffff:0:0/96) is IPv4: an address `::ffff:a.b.c.d` parses as
 * the IPv4 address a.b.c.d, and a CIDR inside ::ffff:0:0/96 becomes its IPv4 form
 * (`::ffff:10.0.0.0/104` → `10.0.0.0/8`). So one network has one spelling in the store,
 * and a flow whose destination arrives mapped (a dual-stack socket reports
 * `::ffff:10.1.2.3`) matches the IPv4 routes, as Go's `IPNet.Contains` does. The
 * consequence: an IPv6 route never matches a mapped address, even `::/0`.
 */
import { addressBytes, formatAddress, isIPv4Mapped } from './address.js';
import { OxyError } from './errors.js';

export type IpFamily = 4 | 6;

export interface ParsedIp {
  family: IpFamily;
  /** 4 bytes for IPv4 (also for a mapped IPv6 input), 16 for IPv6, network byte order. */
  bytes: Uint8Array;
  /** Canonical text: "10.1.2.3", "2001:db8::1". */
  address: string;
}

export interface ParsedCidr {
  family: IpFamily;
  /** Network address (host bits cleared), 4 or 16 bytes. */
  bytes: Uint8Array;
  prefixLength: number;
  /** Canonical CIDR: "10.1.0.0/16", "2001:db8::/32". */
  network: string;
  /** The input had bits set after the prefix ("10.1.2.3/16"); `network` has them cleared. */
  hostBitsSet: boolean;
}

const PREFIX_RE = /^(?:0|[1-9][0-9]{0,2})$/;

/** Parses an IP address; throws OxyError `OXY_ERR_INVALID_IP`. */
export function parseIp(text: string): ParsedIp {
  const bytes = parseAddressBytes(text);
  if (bytes === undefined) throw new OxyError('OXY_ERR_INVALID_IP', `Invalid IP address: ${JSON.stringify(text)}`);
  return { family: bytes.length === 4 ? 4 : 6, bytes, address: formatIp(bytes) };
}

/**
 * Parses "ADDRESS/LEN" (the prefix length is required). Host bits set after the prefix are
 * cleared and reported in `hostBitsSet`, so a caller decides whether to refuse or warn.
 * Throws OxyError `OXY_ERR_INVALID_CIDR`.
 */
export function parseCidr(text: string): ParsedCidr {
  const slash = text.indexOf('/');
  const prefixText = slash < 0 ? '' : text.slice(slash + 1);
  const fail = (why: string): never => {
    throw new OxyError('OXY_ERR_INVALID_CIDR', `Invalid CIDR ${JSON.stringify(text)}: ${why}`);
  };
  if (slash < 0) fail('expected ADDRESS/PREFIX-LENGTH, e.g. 10.1.0.0/16');
  if (!PREFIX_RE.test(prefixText)) fail('prefix length is not a number');
  const addr = parseAddressBytes(text.slice(0, slash), false);
  if (addr === undefined) fail('not an IP address');
  let bytes = addr!;
  let prefixLength = Number(prefixText);
  if (prefixLength > bytes.length * 8) fail(`prefix length exceeds ${bytes.length * 8}`);
  if (bytes.length === 16 && prefixLength >= 96 && isIPv4Mapped(bytes, 0)) {
    bytes = bytes.slice(12);
    prefixLength -= 96;
  }
  const hostBitsSet = maskInPlace(bytes, prefixLength);
  return {
    family: bytes.length === 4 ? 4 : 6,
    bytes,
    prefixLength,
    network: `${formatIp(bytes)}/${prefixLength}`,
    hostBitsSet,
  };
}

/** The canonical spelling of a CIDR, host bits cleared: "10.1.2.3/16" → "10.1.0.0/16". */
export function canonicalCidr(text: string): string {
  return parseCidr(text).network;
}

/** Canonical text of a 4- or 16-byte address (RFC 5952 for IPv6). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length !== 4 && bytes.length !== 16) throw new OxyError('OXY_ERR_INVALID_IP', `An IP address has 4 or 16 bytes, not ${bytes.length}`);
  return formatAddress(bytes);
}

/**
 * Address text → bytes, or undefined. `unmap` turns a mapped IPv6 address into its 4
 * IPv4 bytes (addresses); CIDR parsing unmaps itself because the prefix length moves too.
 */
function parseAddressBytes(text: string, unmap = true): Uint8Array | undefined {
  const bytes = addressBytes(text);
  return bytes && unmap && bytes.length === 16 && isIPv4Mapped(bytes, 0) ? bytes.subarray(12) : bytes;
}

/** Clears the bits after `prefixLength`; returns whether any was set. */
function maskInPlace(bytes: Uint8Array, prefixLength: number): boolean {
  let hostBitsSet = false;
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    const mask = (0xff00 >> keep) & 0xff;
    if ((bytes[i] & ~mask & 0xff) !== 0) hostBitsSet = true;
    bytes[i] &= mask;
  }
  return hostBitsSet;
}
