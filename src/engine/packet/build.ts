import { finishChecksum, pseudoHeaderSum, sumWords } from './checksum.js';
import { IPV4_HEADER_LENGTH, IPV6_HEADER_LENGTH, IpProtocol, TCP_HEADER_LENGTH, UDP_HEADER_LENGTH } from './constants.js';

/** IP header fields for the builders. `src` and `dst` pick the version: 4 or 16 bytes each. */
export interface IpHeaderOptions {
  src: Uint8Array;
  dst: Uint8Array;
  /** IPv4 TTL / IPv6 hop limit; default 64 (Linux's default). */
  ttl?: number;
  /** IPv4 TOS / IPv6 traffic class; default 0. */
  tos?: number;
  /** IPv4 identification; default 0. */
  identification?: number;
  /** IPv4 DF bit; default true, as Linux sends with path MTU discovery on. */
  dontFragment?: boolean;
  /** IPv6 flow label (20 bits); default 0. */
  flowLabel?: number;
  /** Raw IPv4 options, zero-padded here to a multiple of 4 bytes (at most 40). */
  ipv4Options?: Uint8Array;
}

export interface UdpOptions extends IpHeaderOptions {
  srcPort: number;
  dstPort: number;
  payload?: Uint8Array;
  /** Set false to send an IPv4 datagram with a zero ("none") checksum. Default true. */
  checksum?: boolean;
}

export interface TcpOptions extends IpHeaderOptions {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack?: number;
  /** TcpFlag bits, e.g. `TcpFlag.SYN | TcpFlag.ACK`. */
  flags: number;
  /** Default 65535. */
  window?: number;
  urgentPointer?: number;
  /** Raw TCP options (MSS, SACK-permitted, …), zero-padded here to a multiple of 4 (at most 40). */
  options?: Uint8Array;
  payload?: Uint8Array;
}

export interface IcmpEchoOptions extends IpHeaderOptions {
  id: number;
  seq: number;
  /** Build an echo reply instead of a request. */
  reply?: boolean;
  payload?: Uint8Array;
}

const NO_BYTES = new Uint8Array(0);

/** Builds an IPv4 or IPv6 UDP packet with correct checksums. */
export function buildUdp(options: UdpOptions): Buffer {
  const payload = options.payload ?? NO_BYTES;
  const udpLength = UDP_HEADER_LENGTH + payload.length;
  const { buf, l4 } = allocIpPacket(options, IpProtocol.UDP, udpLength);
  writeUint16(buf, l4, options.srcPort);
  writeUint16(buf, l4 + 2, options.dstPort);
  writeUint16(buf, l4 + 4, udpLength);
  writeUint16(buf, l4 + 6, 0);
  buf.set(payload, l4 + UDP_HEADER_LENGTH);
  if (options.checksum !== false || options.src.length === 16) {
    let checksum = transportChecksum(buf, options, IpProtocol.UDP, l4);
    if (checksum === 0) checksum = 0xffff; // RFC 768: a computed zero is sent as all ones
    writeUint16(buf, l4 + 6, checksum);
  }
  return buf;
}

/** Builds an IPv4 or IPv6 TCP segment with correct checksums. */
export function buildTcp(options: TcpOptions): Buffer {
  const tcpOptions = padTo4(options.options ?? NO_BYTES, 'TCP options');
  const payload = options.payload ?? NO_BYTES;
  const headerLength = TCP_HEADER_LENGTH + tcpOptions.length;
  const { buf, l4 } = allocIpPacket(options, IpProtocol.TCP, headerLength + payload.length);
  writeUint16(buf, l4, options.srcPort);
  writeUint16(buf, l4 + 2, options.dstPort);
  writeUint32(buf, l4 + 4, options.seq);
  writeUint32(buf, l4 + 8, options.ack ?? 0);
  buf[l4 + 12] = (headerLength / 4) << 4;
  buf[l4 + 13] = options.flags & 0xff;
  writeUint16(buf, l4 + 14, options.window ?? 0xffff);
  writeUint16(buf, l4 + 16, 0);
  writeUint16(buf, l4 + 18, options.urgentPointer ?? 0);
  buf.set(tcpOptions, l4 + TCP_HEADER_LENGTH);
  buf.set(payload, l4 + headerLength);
  writeUint16(buf, l4 + 16, transportChecksum(buf, options, IpProtocol.TCP, l4));
  return buf;
}

/** Builds an ICMP (IPv4) or ICMPv6 (IPv6) echo request or reply. */
export function buildIcmpEcho(options: IcmpEchoOptions): Buffer {
  const v6 = options.src.length === 16;
  const type = v6 ? (options.reply ? 129 : 128) : options.reply ? 0 : 8;
  const rest = ((options.id & 0xffff) * 0x10000 + (options.seq & 0xffff)) >>> 0;
  return buildIcmp(options, type, 0, rest, options.payload ?? NO_BYTES);
}

/**
 * Builds any ICMP/ICMPv6 message: type, code, the 4-byte rest-of-header (as a 32-bit
 * number) and a body. The protocol follows the address family.
 */
export function buildIcmp(ip: IpHeaderOptions, type: number, code: number, restOfHeader: number, body: Uint8Array): Buffer {
  const protocol = ip.src.length === 16 ? IpProtocol.ICMPV6 : IpProtocol.ICMP;
  const { buf, l4 } = allocIpPacket(ip, protocol, 8 + body.length);
  buf[l4] = type;
  buf[l4 + 1] = code;
  writeUint16(buf, l4 + 2, 0);
  writeUint32(buf, l4 + 4, restOfHeader);
  buf.set(body, l4 + 8);
  writeUint16(buf, l4 + 2, transportChecksum(buf, ip, protocol, l4));
  return buf;
}

/**
 * Allocates a packet for `l4Length` bytes of `protocol` and writes its IP header (IPv4
 * header checksum included). The transport part is left for the caller.
 */
export function allocIpPacket(ip: IpHeaderOptions, protocol: number, l4Length: number): { buf: Buffer; l4: number } {
  const { src, dst } = ip;
  if (src.length !== dst.length || (src.length !== 4 && src.length !== 16)) {
    throw new RangeError(`src and dst must both be 4 or 16 bytes, got ${src.length} and ${dst.length}`);
  }
  if (src.length === 16) {
    const total = IPV6_HEADER_LENGTH + l4Length;
    if (l4Length > 0xffff) throw new RangeError(`IPv6 payload of ${l4Length} bytes needs a jumbogram`);
    const buf = Buffer.allocUnsafe(total);
    const tclass = (ip.tos ?? 0) & 0xff;
    const flowLabel = (ip.flowLabel ?? 0) & 0xfffff;
    writeUint32(buf, 0, ((6 << 28) | (tclass << 20) | flowLabel) >>> 0);
    writeUint16(buf, 4, l4Length);
    buf[6] = protocol;
    buf[7] = ip.ttl ?? 64;
    buf.set(src, 8);
    buf.set(dst, 24);
    return { buf, l4: IPV6_HEADER_LENGTH };
  }
  const options = padTo4(ip.ipv4Options ?? NO_BYTES, 'IPv4 options');
  const headerLength = IPV4_HEADER_LENGTH + options.length;
  const total = headerLength + l4Length;
  if (total > 0xffff) throw new RangeError(`IPv4 packet of ${total} bytes exceeds 65535`);
  const buf = Buffer.allocUnsafe(total);
  buf[0] = 0x40 | (headerLength / 4);
  buf[1] = (ip.tos ?? 0) & 0xff;
  writeUint16(buf, 2, total);
  writeUint16(buf, 4, ip.identification ?? 0);
  writeUint16(buf, 6, ip.dontFragment === false ? 0 : 0x4000);
  buf[8] = ip.ttl ?? 64;
  buf[9] = protocol;
  writeUint16(buf, 10, 0);
  buf.set(src, 12);
  buf.set(dst, 16);
  buf.set(options, IPV4_HEADER_LENGTH);
  writeUint16(buf, 10, finishChecksum(sumWords(buf, 0, headerLength)));
  return { buf, l4: headerLength };
}

function transportChecksum(buf: Buffer, ip: IpHeaderOptions, protocol: number, l4: number): number {
  const pseudo = protocol === IpProtocol.ICMP ? 0 : pseudoHeaderSum(ip.src, ip.dst, protocol, buf.length - l4);
  return finishChecksum(sumWords(buf, l4, buf.length, pseudo));
}

function padTo4(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length > 40) throw new RangeError(`${what} are at most 40 bytes, got ${bytes.length}`);
  if (bytes.length % 4 === 0) return bytes;
  const padded = new Uint8Array(bytes.length + (4 - (bytes.length % 4)));
  padded.set(bytes);
  return padded;
}

function writeUint16(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = (value >>> 8) & 0xff;
  buf[offset + 1] = value & 0xff;
}

function writeUint32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = (value >>> 24) & 0xff;
  buf[offset + 1] = (value >>> 16) & 0xff;
  buf[offset + 2] = (value >>> 8) & 0xff;
  buf[offset + 3] = value & 0xff;
}
