import { finishChecksum, sumWords } from './checksum.js';
import { IPV4_HEADER_LENGTH, IPV6_HEADER_LENGTH, IpProtocol } from './constants.js';

/** Size of the IPv6 fragment extension header (RFC 8200 §4.5). */
export const IPV6_FRAGMENT_HEADER_LENGTH = 8;

/**
 * Where the fragmentable part of a whole (unfragmented) IP packet starts: after the IPv4
 * header with its options, or after the IPv6 header and the extension headers every
 * fragment repeats (hop-by-hop, routing, and destination options ahead of a routing
 * header; RFC 8200 §4.5). Also the offset of the byte that names the protocol found there
 * (IPv4 protocol, or the last unfragmentable header's next header), as `nextHeaderAt`.
 */
export function unfragmentablePart(packet: Uint8Array): { length: number; nextHeaderAt: number } {
  if (packet[0] >> 4 === 4) return { length: (packet[0] & 0x0f) * 4, nextHeaderAt: 9 };
  const end = IPV6_HEADER_LENGTH + ((packet[4] << 8) | packet[5]);
  let nextHeaderAt = 6;
  let offset = IPV6_HEADER_LENGTH;
  for (;;) {
    const type = packet[nextHeaderAt];
    const repeated =
      type === IpProtocol.HOP_BY_HOP ||
      type === IpProtocol.ROUTING ||
      (type === IpProtocol.DESTINATION_OPTIONS && offset + 8 <= end && packet[offset] === IpProtocol.ROUTING);
    if (!repeated || offset + 8 > end) return { length: offset, nextHeaderAt };
    nextHeaderAt = offset;
    offset += (packet[offset + 1] + 1) * 8;
  }
}

/**
 * Offset of the next-header byte that names the header at `headerOffset` of an IPv6
 * packet (6 for the fixed header's), walking a chain already checked by the parser.
 */
export function ipv6NextHeaderField(packet: Uint8Array, headerOffset: number): number {
  let field = 6;
  for (let offset = IPV6_HEADER_LENGTH; offset < headerOffset; ) {
    const type = packet[field];
    field = offset;
    offset += type === IpProtocol.AH ? (packet[offset + 1] + 2) * 4 : (packet[offset + 1] + 1) * 8;
  }
  return field;
}

/**
 * Builds one fragment of the whole IP packet `packet`: the bytes `[start, end)` of its
 * fragmentable part (start a multiple of 8), with "more fragments" set unless `end` is
 * the end of the packet (override with `more`). IPv4 fragments after the first keep only
 * the options whose "copied" flag is set (RFC 791); IPv6 fragments get a fragment header
 * after the unfragmentable part (RFC 8200 §4.5). `identification` is 16 bits for IPv4,
 * 32 for IPv6. For tests and for an edge that must fragment toward a small-MTU client;
 * it does not check the result against any MTU.
 */
export function buildFragment(packet: Uint8Array, start: number, end: number, identification: number, more?: boolean): Buffer {
  const { length: headerLength, nextHeaderAt } = unfragmentablePart(packet);
  const v4 = packet[0] >> 4 === 4;
  const total = v4 ? (packet[2] << 8) | packet[3] : IPV6_HEADER_LENGTH + ((packet[4] << 8) | packet[5]);
  if (start % 8 !== 0 || start < 0 || end <= start || headerLength + end > total) {
    throw new RangeError(`fragment [${start}, ${end}) does not fit the ${total - headerLength}-byte fragmentable part`);
  }
  const moreFragments = more ?? headerLength + end < total;
  const data = packet.subarray(headerLength + start, headerLength + end);
  if (v4) {
    const options = start === 0 ? packet.subarray(IPV4_HEADER_LENGTH, headerLength) : copiedIpv4Options(packet.subarray(IPV4_HEADER_LENGTH, headerLength));
    const fragmentHeaderLength = IPV4_HEADER_LENGTH + options.length;
    const out = Buffer.allocUnsafe(fragmentHeaderLength + data.length);
    out.set(packet.subarray(0, IPV4_HEADER_LENGTH), 0);
    out.set(options, IPV4_HEADER_LENGTH);
    out.set(data, fragmentHeaderLength);
    out[0] = 0x40 | (fragmentHeaderLength / 4);
    out.writeUInt16BE(out.length, 2);
    out.writeUInt16BE(identification & 0xffff, 4);
    out.writeUInt16BE((moreFragments ? 0x2000 : 0) | (start / 8), 6);
    out.writeUInt16BE(0, 10);
    out.writeUInt16BE(finishChecksum(sumWords(out, 0, fragmentHeaderLength)), 10);
    return out;
  }
  const out = Buffer.allocUnsafe(headerLength + IPV6_FRAGMENT_HEADER_LENGTH + data.length);
  out.set(packet.subarray(0, headerLength), 0);
  const fragmentHeader = headerLength;
  out[fragmentHeader] = packet[nextHeaderAt];
  out[fragmentHeader + 1] = 0;
  out.writeUInt16BE(start | (moreFragments ? 1 : 0), fragmentHeader + 2);
  out.writeUInt32BE(identification >>> 0, fragmentHeader + 4);
  out.set(data, fragmentHeader + IPV6_FRAGMENT_HEADER_LENGTH);
  out[nextHeaderAt] = IpProtocol.FRAGMENT;
  out.writeUInt16BE(out.length - IPV6_HEADER_LENGTH, 4);
  return out;
}

/**
 * Splits a whole IP packet into fragments of at most `mtu` bytes each, in order (what a
 * sending host's stack does). A packet that fits is returned as the only element, as is.
 */
export function fragmentPacket(packet: Buffer, mtu: number, identification: number): Buffer[] {
  const v4 = packet[0] >> 4 === 4;
  const total = v4 ? (packet[2] << 8) | packet[3] : IPV6_HEADER_LENGTH + ((packet[4] << 8) | packet[5]);
  if (total <= mtu) return [packet];
  const headerLength = unfragmentablePart(packet).length;
  // Later IPv4 fragments may carry fewer options than the first: size every one for the first's.
  const room = (mtu - headerLength - (v4 ? 0 : IPV6_FRAGMENT_HEADER_LENGTH)) & ~7;
  if (room <= 0) throw new RangeError(`an MTU of ${mtu} leaves no room after a ${headerLength}-byte header`);
  const fragments: Buffer[] = [];
  for (let start = 0; headerLength + start < total; start += room) {
    fragments.push(buildFragment(packet, start, Math.min(start + room, total - headerLength), identification));
  }
  return fragments;
}

/** The IPv4 options whose "copied" flag is set (RFC 791): what fragments after the first repeat, padded to 4 bytes. */
function copiedIpv4Options(options: Uint8Array): Uint8Array {
  const kept: number[] = [];
  for (let i = 0; i < options.length; ) {
    const type = options[i];
    if (type === 0) break; // end of option list
    if (type === 1) {
      i++; // no-operation
      continue;
    }
    const length = i + 1 < options.length ? Math.max(2, options[i + 1]) : options.length - i;
    if (type & 0x80) for (let j = i; j < Math.min(i + length, options.length); j++) kept.push(options[j]);
    i += length;
  }
  while (kept.length % 4 !== 0) kept.push(0);
  return Uint8Array.from(kept);
}
