import { IPV4_HEADER_LENGTH } from './constants.js';
import { parseTransport } from './l4.js';
import { malformed, TransportKind, type ParseResult, type PacketView } from './view.js';

/**
 * Parses an IPv4 packet (version nibble already checked) into `view`.
 * Fragments (MF set or offset ≠ 0, first fragment included) are marked and their
 * transport header is left unread: ports of a fragmented datagram need reassembly.
 */
export function parseIpv4Into(buf: Buffer, view: PacketView): ParseResult {
  if (buf.length < IPV4_HEADER_LENGTH) return malformed('ipv4-truncated-header');
  const headerLength = (buf[0] & 0x0f) * 4;
  if (headerLength < IPV4_HEADER_LENGTH) return malformed('ipv4-bad-ihl');
  const totalLength = (buf[2] << 8) | buf[3];
  if (totalLength < headerLength || totalLength > buf.length) return malformed('ipv4-bad-total-length');

  const flagsAndOffset = (buf[6] << 8) | buf[7];
  const fragmentOffset = (flagsAndOffset & 0x1fff) * 8;
  const moreFragments = (flagsAndOffset & 0x2000) !== 0;

  view.buf = buf;
  view.version = 4;
  view.length = totalLength;
  view.protocol = buf[9];
  view.l4Offset = headerLength;
  view.fragmentOffset = fragmentOffset;
  view.moreFragments = moreFragments;
  view.isFragment = moreFragments || fragmentOffset !== 0;
  if (view.isFragment) {
    view.transport = TransportKind.None;
    view.l4HeaderLength = 0;
    view.l4End = totalLength;
    return view;
  }
  return parseTransport(view) ?? view;
}
