import { IpProtocol } from './constants.js';

/** Why the parser refused a packet; stable strings for counters and logs. */
export type MalformedReason =
  | 'empty'
  | 'unknown-version'
  | 'ipv4-truncated-header'
  | 'ipv4-bad-ihl'
  | 'ipv4-bad-total-length'
  | 'ipv6-truncated-header'
  | 'ipv6-bad-payload-length'
  | 'ipv6-truncated-extension'
  | 'ipv6-hop-by-hop-not-first'
  | 'ipv6-too-many-extensions'
  | 'tcp-truncated'
  | 'tcp-bad-data-offset'
  | 'udp-truncated'
  | 'udp-bad-length'
  | 'icmp-truncated';

/** A packet the parser refused. One frozen instance per reason: refusing allocates nothing. */
export class MalformedPacket {
  readonly ok = false as const;
  constructor(readonly reason: MalformedReason) {
    Object.freeze(this);
  }
}

const malformedByReason = new Map<MalformedReason, MalformedPacket>();

/** The shared instance for `reason`. */
export function malformed(reason: MalformedReason): MalformedPacket {
  let result = malformedByReason.get(reason);
  if (!result) {
    result = new MalformedPacket(reason);
    malformedByReason.set(reason, result);
  }
  return result;
}

/** Which transport header the parser checked; only these have L4 getters that mean anything. */
export const TransportKind = {
  /** Fragment, unknown protocol, ESP, no next header…: nothing above IP was read. */
  None: 0,
  Tcp: 1,
  Udp: 2,
  /** ICMP over IPv4 or ICMPv6 over IPv6. */
  Icmp: 3,
} as const;
export type TransportKind = (typeof TransportKind)[keyof typeof TransportKind];

/**
 * A parsed IPv4 or IPv6 packet: offsets into the Buffer it was parsed from, plus getters
 * that read fields on demand. Nothing is copied: `payload`, `src` and `dst` are views,
 * and writing through them (or through the rewrite functions) changes the packet.
 *
 * The packet starts at byte 0 of `buf` (pass `buf.subarray(offset)` to parse from inside
 * a larger datagram). Bytes after `length` (link padding) are ignored.
 */
export class PacketView {
  readonly ok = true as const;
  buf: Buffer = EMPTY;
  version: 4 | 6 = 4;
  /** End of the IP packet as its header says (IPv4 total length, IPv6 40 + payload length). */
  length = 0;
  /** Upper-layer protocol: after IPv6 extension headers, or the fragment's next header. */
  protocol = 0;
  /** Where the upper-layer header starts (after IPv4 options / IPv6 extension headers). */
  l4Offset = 0;
  /** End of the transport segment: `length`, or less when the UDP length field says so. */
  l4End = 0;
  transport: TransportKind = TransportKind.None;
  /** Transport header length (TCP data offset × 4, 8 for UDP and ICMP); 0 when not parsed. */
  l4HeaderLength = 0;
  /** True for any piece of a fragmented datagram (MF set or offset ≠ 0); its L4 is not parsed. */
  isFragment = false;
  /** Fragment offset in bytes. */
  fragmentOffset = 0;
  moreFragments = false;

  get addressLength(): 4 | 16 {
    return this.version === 4 ? 4 : 16;
  }

  get srcOffset(): number {
    return this.version === 4 ? 12 : 8;
  }

  get dstOffset(): number {
    return this.version === 4 ? 16 : 24;
  }

  /** Source address: a 4- or 16-byte view. */
  get src(): Buffer {
    const offset = this.srcOffset;
    return this.buf.subarray(offset, offset + this.addressLength);
  }

  /** Destination address: a 4- or 16-byte view. */
  get dst(): Buffer {
    const offset = this.dstOffset;
    return this.buf.subarray(offset, offset + this.addressLength);
  }

  /** IPv4 TTL or IPv6 hop limit. */
  get ttl(): number {
    return this.buf[this.version === 4 ? 8 : 7];
  }

  /** IPv4 header length in bytes (IHL × 4); for IPv6 the fixed 40. */
  get ipHeaderLength(): number {
    return this.version === 4 ? (this.buf[0] & 0x0f) * 4 : 40;
  }

  /** IPv4 header checksum as stored; 0 for IPv6, which has none. */
  get ipChecksum(): number {
    return this.version === 4 ? (this.buf[10] << 8) | this.buf[11] : 0;
  }

  /**
   * TCP/UDP source port; for ICMP echo request/reply the identifier (the "port" a NAT
   * maps for pings); otherwise 0.
   */
  get srcPort(): number {
    return this.portAt(0);
  }

  /** TCP/UDP destination port; the ICMP echo identifier as for {@link srcPort}; otherwise 0. */
  get dstPort(): number {
    return this.portAt(2);
  }

  /** @internal */
  portAt(fieldOffset: 0 | 2): number {
    const buf = this.buf;
    const l4 = this.l4Offset;
    if (this.transport === TransportKind.Tcp || this.transport === TransportKind.Udp) {
      return (buf[l4 + fieldOffset] << 8) | buf[l4 + fieldOffset + 1];
    }
    if (this.transport === TransportKind.Icmp && this.isEcho) return (buf[l4 + 4] << 8) | buf[l4 + 5];
    return 0;
  }

  /** Offset of the TCP/UDP/ICMP checksum field, or -1 when there is none to maintain. */
  get l4ChecksumOffset(): number {
    switch (this.transport) {
      case TransportKind.Tcp:
        return this.l4Offset + 16;
      case TransportKind.Udp:
        return this.l4Offset + 6;
      case TransportKind.Icmp:
        return this.l4Offset + 2;
      default:
        return -1;
    }
  }

  /** The transport checksum as stored; 0 when there is no parsed transport header. */
  get l4Checksum(): number {
    const offset = this.l4ChecksumOffset;
    return offset < 0 ? 0 : (this.buf[offset] << 8) | this.buf[offset + 1];
  }

  /** First byte after the transport header (TCP options included). */
  get payloadOffset(): number {
    return this.l4Offset + this.l4HeaderLength;
  }

  get payloadLength(): number {
    return this.l4End - this.payloadOffset;
  }

  /**
   * Transport payload as a view (TCP data, UDP datagram, ICMP body after the 8-byte
   * header); for an unparsed transport (fragments, other protocols) everything after the
   * IP header(s).
   */
  get payload(): Buffer {
    return this.buf.subarray(this.payloadOffset, this.l4End);
  }

  // --- TCP -------------------------------------------------------------------------

  get tcpSeq(): number {
    const b = this.buf;
    const o = this.l4Offset + 4;
    return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  }

  get tcpAck(): number {
    const b = this.buf;
    const o = this.l4Offset + 8;
    return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  }

  /** The 8 flag bits (see TcpFlag): CWR ECE URG ACK PSH RST SYN FIN. */
  get tcpFlags(): number {
    return this.buf[this.l4Offset + 13];
  }

  get tcpWindow(): number {
    return (this.buf[this.l4Offset + 14] << 8) | this.buf[this.l4Offset + 15];
  }

  /** Bytes of TCP options (data offset × 4 − 20). */
  get tcpOptionsLength(): number {
    return this.transport === TransportKind.Tcp ? this.l4HeaderLength - 20 : 0;
  }

  // --- UDP -------------------------------------------------------------------------

  /** The UDP length field (header + data). */
  get udpLength(): number {
    return (this.buf[this.l4Offset + 4] << 8) | this.buf[this.l4Offset + 5];
  }

  // --- ICMP / ICMPv6 ---------------------------------------------------------------

  get icmpType(): number {
    return this.buf[this.l4Offset];
  }

  get icmpCode(): number {
    return this.buf[this.l4Offset + 1];
  }

  /** True for ICMP echo request/reply (types 8/0) or ICMPv6 echo (128/129). */
  get isEcho(): boolean {
    if (this.transport !== TransportKind.Icmp) return false;
    const type = this.buf[this.l4Offset];
    return this.version === 4 ? type === 8 || type === 0 : type === 128 || type === 129;
  }

  get echoId(): number {
    return (this.buf[this.l4Offset + 4] << 8) | this.buf[this.l4Offset + 5];
  }

  get echoSeq(): number {
    return (this.buf[this.l4Offset + 6] << 8) | this.buf[this.l4Offset + 7];
  }

  /** True for ICMP(v6) error messages (unreachable, too big, time exceeded, …), which quote a packet. */
  get isIcmpError(): boolean {
    if (this.transport !== TransportKind.Icmp) return false;
    const type = this.buf[this.l4Offset];
    return this.version === 4 ? type === 3 || type === 4 || type === 5 || type === 11 || type === 12 : type < 128;
  }

  /** The protocol as a short name for logs: tcp, udp, icmp, icmpv6 or the number. */
  get protocolName(): string {
    switch (this.protocol) {
      case IpProtocol.TCP:
        return 'tcp';
      case IpProtocol.UDP:
        return 'udp';
      case IpProtocol.ICMP:
        return 'icmp';
      case IpProtocol.ICMPV6:
        return 'icmpv6';
      default:
        return `proto-${this.protocol}`;
    }
  }
}

const EMPTY = Buffer.alloc(0);

export type ParseResult = PacketView | MalformedPacket;
