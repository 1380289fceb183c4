import { foldSum, updateChecksum, updatePartialChecksum } from './checksum.js';
import { computeTransportChecksum } from './verify.js';
import { TransportKind, type PacketView } from './view.js';

/**
 * How the transport checksum field is to be maintained:
 * - `full`: the field holds a complete checksum (packets from a device, a TUN without
 *   offload, the network); address and port changes are folded in per RFC 1624.
 * - `partial`: the field holds the pseudo-header sum a device will complete
 *   (CHECKSUM_PARTIAL via IFF_VNET_HDR); only address changes touch it. Applies to
 *   TCP and UDP; ICMP checksums are never offloaded and stay `full`.
 */
export type ChecksumMode = 'full' | 'partial';

/**
 * Rewrites the source address (and port, when given) in place, updating the IPv4 header
 * checksum and the TCP/UDP/ICMPv6 checksum incrementally — what a NAT does per packet.
 * For ICMP/ICMPv6 echo the "port" is the identifier, as in {@link PacketView.srcPort}.
 *
 * Returns false, changing nothing, when the packet cannot be rewritten: a fragment (its
 * transport header is elsewhere or unparsed), or a port was given for a packet without
 * one. Throws RangeError when `address` is not as long as the packet's addresses.
 */
export function rewriteSource(view: PacketView, address: Uint8Array, port?: number, mode: ChecksumMode = 'full'): boolean {
  return rewriteEndpoint(view, view.version === 4 ? 12 : 8, 0, address, port, mode);
}

/** Same as {@link rewriteSource} for the destination address and port. */
export function rewriteDestination(view: PacketView, address: Uint8Array, port?: number, mode: ChecksumMode = 'full'): boolean {
  return rewriteEndpoint(view, view.version === 4 ? 16 : 24, 2, address, port, mode);
}

function rewriteEndpoint(
  view: PacketView,
  addressOffset: number,
  portFieldOffset: 0 | 2,
  address: Uint8Array,
  port: number | undefined,
  mode: ChecksumMode,
): boolean {
  const buf = view.buf;
  const addressLength = view.version === 4 ? 4 : 16;
  if (address.length !== addressLength) {
    throw new RangeError(`IPv${view.version} address must be ${addressLength} bytes, got ${address.length}`);
  }
  if (view.isFragment) return false;

  // Where the port (or echo identifier) lives, if it is to change.
  let portOffset = -1;
  if (port !== undefined) {
    if (view.transport === TransportKind.Tcp || view.transport === TransportKind.Udp) {
      portOffset = view.l4Offset + portFieldOffset;
    } else if (view.isEcho) {
      portOffset = view.l4Offset + 4;
    } else {
      return false;
    }
  }

  // Sum the old and new address words while copying: at most 8 words, no call needed.
  let oldAddressSum = 0;
  let newAddressSum = 0;
  for (let i = 0; i < addressLength; i += 2) {
    const at = addressOffset + i;
    oldAddressSum += (buf[at] << 8) | buf[at + 1];
    newAddressSum += (address[i] << 8) | address[i + 1];
    buf[at] = address[i];
    buf[at + 1] = address[i + 1];
  }

  if (view.version === 4) {
    const ipChecksum = (buf[10] << 8) | buf[11];
    writeUint16(buf, 10, updateChecksum(ipChecksum, oldAddressSum, newAddressSum));
  }

  let oldPort = 0;
  let newPort = 0;
  if (portOffset >= 0) {
    oldPort = (buf[portOffset] << 8) | buf[portOffset + 1];
    newPort = port! & 0xffff;
    writeUint16(buf, portOffset, newPort);
  }

  const checksumOffset = view.l4ChecksumOffset;
  if (checksumOffset < 0) return true;
  // ICMPv4's checksum does not cover a pseudo-header: only the identifier matters to it.
  const coversAddresses = view.transport !== TransportKind.Icmp || view.version === 6;
  const oldSum = (coversAddresses ? oldAddressSum : 0) + oldPort;
  const newSum = (coversAddresses ? newAddressSum : 0) + newPort;
  const checksum = (buf[checksumOffset] << 8) | buf[checksumOffset + 1];

  // Devices offload TCP and UDP checksums only; ICMP's is always complete.
  const partial = mode === 'partial' && view.transport !== TransportKind.Icmp;
  if (view.transport === TransportKind.Udp && checksum === 0 && !partial) {
    // RFC 768: zero means "no checksum" (legal on IPv4; on IPv6 the packet is already
    // invalid): keep it zero rather than invent one.
    return true;
  }
  let updated: number;
  if (partial) {
    updated = updatePartialChecksum(checksum, oldAddressSum, newAddressSum);
  } else {
    updated = updateChecksum(checksum, foldSum(oldSum), foldSum(newSum));
    // A computed UDP checksum of 0 is sent as all ones (RFC 768).
    if (updated === 0 && view.transport === TransportKind.Udp) updated = 0xffff;
    // RFC 1624's update gives 0 where the covered words sum to zero, whose checksum is all ones:
    // only an ICMPv4 message of zeros (no pseudo-header; e.g. an echo reply with id, sequence and
    // data 0) can. Rare: computed whole.
    else if (updated === 0 && view.transport === TransportKind.Icmp && view.version === 4) updated = computeTransportChecksum(view);
  }
  writeUint16(buf, checksumOffset, updated);
  return true;
}

/**
 * Decrements the IPv4 TTL / IPv6 hop limit in place (updating the IPv4 header checksum),
 * as a router does when it forwards. Returns false, changing nothing, when the packet
 * must not be forwarded (TTL ≤ 1): answer it with ICMP time exceeded instead.
 */
export function decrementTtl(view: PacketView): boolean {
  const buf = view.buf;
  if (view.version === 6) {
    if (buf[7] <= 1) return false;
    buf[7]--;
    return true;
  }
  const ttl = buf[8];
  if (ttl <= 1) return false;
  // TTL is the high byte of the word it shares with the protocol.
  const oldWord = (ttl << 8) | buf[9];
  buf[8] = ttl - 1;
  const ipChecksum = (buf[10] << 8) | buf[11];
  writeUint16(buf, 10, updateChecksum(ipChecksum, oldWord, oldWord - 0x100));
  return true;
}

function writeUint16(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 8;
  buf[offset + 1] = value & 0xff;
}
