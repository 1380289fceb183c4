/**
 * IP addresses and HOST:PORT text, one module for the whole tree (routes, packets, the
 * native sockets, listeners): one grammar, one spelling.
 *
 * - Parsing is ipaddr.js restricted to what cloudflared (Go's net.ParseIP) accepts: IPv4
 *   only as four-part decimal without leading zeros ("10.1", "010.0.0.1" refused), IPv6 in
 *   any RFC 4291 form without a zone. An address parses to its bytes as written: an
 *   IPv4-mapped IPv6 address stays 16 bytes here (routes unmap it: core/cidr.ts).
 * - Formatting is dotted quad for IPv4 and RFC 5952 for IPv6, IPv4-mapped addresses with
 *   their dotted quad (`::ffff:198.18.0.1`, §5, as Node prints a dual-stack peer). It is
 *   hand-written: the QUIC listener formats the source of every datagram it receives, and
 *   `node bench/address.js` measures it ~2.4× faster than ipaddr.js (both families).
 */
import ipaddr from 'ipaddr.js';

/** Whether the 16 bytes at `offset` are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
export function isIPv4Mapped(buf: Uint8Array, offset: number): boolean {
  for (let i = 0; i < 10; i++) if (buf[offset + i] !== 0) return false;
  return buf[offset + 10] === 0xff && buf[offset + 11] === 0xff;
}

/** Formats 4 or 16 bytes at `offset` as dotted-quad IPv4 or RFC 5952 IPv6 text. */
export function formatAddress(bytes: Uint8Array, offset = 0, length = bytes.length - offset): string {
  if (length === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  }
  if (length !== 16 || offset + 16 > bytes.length) {
    throw new RangeError(`an IP address is 4 or 16 bytes, got ${length}`);
  }
  // RFC 5952 §5: IPv4-mapped addresses keep the dotted quad.
  if (isIPv4Mapped(bytes, offset)) return `::ffff:${formatAddress(bytes, offset + 12, 4)}`;
  const words = new Array<number>(8);
  for (let i = 0; i < 8; i++) words[i] = (bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!;
  // RFC 5952 §4.2: compress the longest run (first on a tie) of two or more zero words.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    words
      .slice(from, to)
      .map((w) => w.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** Formats an address with a port: `198.18.0.1:80`, `[2001:db8::1]:80`. */
export function formatEndpoint(bytes: Uint8Array, port: number, offset = 0, length = bytes.length - offset): string {
  return joinHostPort(formatAddress(bytes, offset, length), port);
}

/**
 * The 4 bytes of strict four-part decimal IPv4 text (Go's net.ParseIP: no leading zeros, each
 * part 0-255), or undefined. By hand: ipaddr.js's check and parse ran its regular expressions
 * twice and cost ~3 % of the connector's main thread per new private connection (each OPEN's
 * destination is parsed once).
 */
function ipv4Bytes(text: string): [number, number, number, number] | undefined {
  const out: [number, number, number, number] = [0, 0, 0, 0];
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // the end closes the last part as a '.'
    if (c === 46) {
      if (digits === 0 || part > 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return undefined; // a leading zero
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return undefined;
    } else {
      return undefined;
    }
  }
  return part === 4 ? out : undefined;
}

/** The bytes of IPv4 or IPv6 text (4 or 16, mapped addresses as written), or undefined when it is not one. */
export function addressBytes(text: string): Buffer | undefined {
  // ipaddr.js validates by catching its own exceptions, and an exception costs ~10 µs:
  // send each text only to the parser of its family, and parse once.
  if (!text.includes(':')) {
    const quad = ipv4Bytes(text);
    return quad ? Buffer.from(quad) : undefined;
  }
  const hex = embeddedIPv4ToHex(text);
  if (hex === undefined || hex.includes('%')) return undefined;
  try {
    return Buffer.from(ipaddr.IPv6.parse(hex).toByteArray());
  } catch {
    return undefined;
  }
}

/** Parses IPv4 or IPv6 text into a new 4- or 16-byte Buffer; throws RangeError on bad text. */
export function parseAddress(text: string): Buffer {
  const bytes = addressBytes(text);
  if (!bytes) throw new RangeError(`not an IP address: ${JSON.stringify(text)}`);
  return bytes;
}

/**
 * Rewrites a trailing dotted quad in IPv6 text as two hex groups ("::ffff:1.2.3.4" →
 * "::ffff:102:304"); undefined when that quad is not strict four-part decimal. ipaddr.js
 * would read "::1.2.3.4" (IPv4-compatible, ::102:304 for Go) as ::ffff:1.2.3.4, and
 * "::ffff:010.0.0.1" as ::ffff:10.0.0.1, which Go refuses.
 */
function embeddedIPv4ToHex(text: string): string | undefined {
  const colon = text.lastIndexOf(':');
  const tail = text.slice(colon + 1);
  if (colon < 0 || !tail.includes('.')) return text;
  const quad = ipv4Bytes(tail);
  if (!quad) return undefined;
  const [a, b, c, d] = quad;
  return `${text.slice(0, colon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

/** HOST:PORT with an IPv6 address in brackets: `198.18.0.1:80`, `[2001:db8::1]:80`, `example.com:443`. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** "127.0.0.1:2000", "[::1]:0", "localhost:9000"; an empty host is 127.0.0.1. Throws on anything else. */
export function splitHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!m) throw new Error(`${text} is not HOST:PORT`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port: Number(m[3]) };
}
