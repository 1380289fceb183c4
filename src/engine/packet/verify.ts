import { finishChecksum, foldSum, pseudoHeaderSumAt, sumWords } from './checksum.js';
import { TransportKind, type PacketView } from './view.js';

/** The correct IPv4 header checksum for `view` (the stored field is skipped); 0 for IPv6. */
export function computeIpv4HeaderChecksum(view: PacketView): number {
  if (view.version !== 4) return 0;
  const end = view.ipHeaderLength;
  return finishChecksum(sumWords(view.buf, 12, end, sumWords(view.buf, 0, 10)));
}

/** True when the stored IPv4 header checksum is right (always true for IPv6). */
export function verifyIpv4HeaderChecksum(view: PacketView): boolean {
  if (view.version !== 4) return true;
  return foldSum(sumWords(view.buf, 0, view.ipHeaderLength)) === 0xffff;
}

/**
 * The correct TCP/UDP/ICMP/ICMPv6 checksum for `view` (the stored field is skipped),
 * pseudo-header included where the protocol has one; -1 when no transport header was
 * parsed. A UDP result of 0 is given as 0xFFFF, as it must be sent.
 */
export function computeTransportChecksum(view: PacketView): number {
  const checksumOffset = view.l4ChecksumOffset;
  if (checksumOffset < 0) return -1;
  const buf = view.buf;
  const l4 = view.l4Offset;
  const end = view.l4End;
  const pseudo =
    view.transport === TransportKind.Icmp && view.version === 4 ? 0 : pseudoHeaderSumAt(buf, view.srcOffset, view.addressLength, view.protocol, end - l4);
  // The field sits an even distance from l4Offset, so both ranges stay word-aligned.
  const sum = sumWords(buf, checksumOffset + 2, end, sumWords(buf, l4, checksumOffset, pseudo));
  const checksum = finishChecksum(sum);
  return checksum === 0 && view.transport === TransportKind.Udp ? 0xffff : checksum;
}

/**
 * True when the stored transport checksum is right, or when there is nothing to check
 * (no parsed transport header, or an IPv4 UDP datagram sent without a checksum).
 */
export function verifyTransportChecksum(view: PacketView): boolean {
  const checksumOffset = view.l4ChecksumOffset;
  if (checksumOffset < 0) return true;
  const buf = view.buf;
  const stored = (buf[checksumOffset] << 8) | buf[checksumOffset + 1];
  if (stored === 0 && view.transport === TransportKind.Udp && view.version === 4) return true;
  const l4 = view.l4Offset;
  const pseudo =
    view.transport === TransportKind.Icmp && view.version === 4
      ? 0
      : pseudoHeaderSumAt(buf, view.srcOffset, view.addressLength, view.protocol, view.l4End - l4);
  return foldSum(sumWords(buf, l4, view.l4End, pseudo)) === 0xffff;
}

/** Writes correct IPv4 header and transport checksums into the packet. */
export function fillChecksums(view: PacketView): void {
  const buf = view.buf;
  if (view.version === 4) {
    const ip = computeIpv4HeaderChecksum(view);
    buf[10] = ip >>> 8;
    buf[11] = ip & 0xff;
  }
  const transport = computeTransportChecksum(view);
  if (transport >= 0) {
    const offset = view.l4ChecksumOffset;
    buf[offset] = transport >>> 8;
    buf[offset + 1] = transport & 0xff;
  }
}
