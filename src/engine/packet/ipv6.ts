import { IPV6_HEADER_LENGTH, IpProtocol } from './constants.js';
import { parseTransport } from './l4.js';
import { malformed, TransportKind, type MalformedReason, type ParseResult, type PacketView } from './view.js';

/**
 * More extension headers than any real stack sends; the walk is already bounded by the
 * packet length (each header is ≥ 8 bytes), this just caps the work an attacker can ask for.
 */
export const MAX_IPV6_EXTENSION_HEADERS = 16;

/** Where an extension-header walk ended; filled by {@link walkIpv6Extensions} (one walk at a time). */
export const ipv6Walk = {
  /** Offset of the upper-layer header (or of the fragment data). */
  offset: 0,
  /** Upper-layer protocol. */
  next: 0,
  fragmentOffset: 0,
  moreFragments: false,
  isFragment: false,
};

/**
 * Walks IPv6 extension headers (hop-by-hop, routing, fragment, destination options, AH,
 * mobility, HIP, shim6) from `start`, where a header of type `next` begins, to the
 * upper-layer protocol, reading nothing at or past `end`. ESP and "no next header" end
 * the walk with an opaque payload. A fragment header with offset 0 and M=0 (an atomic
 * fragment, RFC 6946) does not make the packet a fragment. The result goes to
 * {@link ipv6Walk} (no allocation); a malformed chain returns its reason.
 */
export function walkIpv6Extensions(buf: Uint8Array, start: number, end: number, next: number): MalformedReason | undefined {
  let offset = start;
  let fragmentOffset = 0;
  let moreFragments = false;
  let isFragment = false;
  for (let count = 0; ; count++) {
    let headerLength: number;
    switch (next) {
      // biome-ignore lint/suspicious/noFallthroughSwitchClause: hop-by-hop has the layout of the option-style headers below
      case IpProtocol.HOP_BY_HOP:
        if (offset !== start) return 'ipv6-hop-by-hop-not-first';
      // falls through: same layout as the other option-style headers
      case IpProtocol.ROUTING:
      case IpProtocol.DESTINATION_OPTIONS:
      case IpProtocol.MOBILITY:
      case IpProtocol.HIP:
      case IpProtocol.SHIM6:
        if (offset + 8 > end) return 'ipv6-truncated-extension';
        headerLength = (buf[offset + 1] + 1) * 8;
        break;
      case IpProtocol.AH:
        // RFC 4302: length in 4-byte units minus 2.
        if (offset + 8 > end) return 'ipv6-truncated-extension';
        headerLength = (buf[offset + 1] + 2) * 4;
        break;
      case IpProtocol.FRAGMENT: {
        if (offset + 8 > end) return 'ipv6-truncated-extension';
        const field = (buf[offset + 2] << 8) | buf[offset + 3];
        fragmentOffset = field & 0xfff8;
        moreFragments = (field & 1) !== 0;
        headerLength = 8;
        isFragment = fragmentOffset !== 0 || moreFragments;
        break;
      }
      default:
        headerLength = -1;
    }
    if (headerLength < 0) break;
    if (count >= MAX_IPV6_EXTENSION_HEADERS) return 'ipv6-too-many-extensions';
    if (offset + headerLength > end) return 'ipv6-truncated-extension';
    next = buf[offset];
    offset += headerLength;
    // After the fragment header of a real fragment comes the datagram's tail, not more headers.
    if (isFragment) break;
  }
  ipv6Walk.offset = offset;
  ipv6Walk.next = next;
  ipv6Walk.fragmentOffset = fragmentOffset;
  ipv6Walk.moreFragments = moreFragments;
  ipv6Walk.isFragment = isFragment;
  return undefined;
}

/** Parses an IPv6 packet (version nibble already checked) into `view`. */
export function parseIpv6Into(buf: Buffer, view: PacketView): ParseResult {
  if (buf.length < IPV6_HEADER_LENGTH) return malformed('ipv6-truncated-header');
  const end = IPV6_HEADER_LENGTH + ((buf[4] << 8) | buf[5]);
  if (end > buf.length) return malformed('ipv6-bad-payload-length');
  const bad = walkIpv6Extensions(buf, IPV6_HEADER_LENGTH, end, buf[6]);
  if (bad) return malformed(bad);

  view.buf = buf;
  view.version = 6;
  view.length = end;
  view.protocol = ipv6Walk.next;
  view.l4Offset = ipv6Walk.offset;
  view.fragmentOffset = ipv6Walk.fragmentOffset;
  view.moreFragments = ipv6Walk.moreFragments;
  view.isFragment = ipv6Walk.isFragment;
  if (view.isFragment) {
    view.transport = TransportKind.None;
    view.l4HeaderLength = 0;
    view.l4End = end;
    return view;
  }
  return parseTransport(view) ?? view;
}
