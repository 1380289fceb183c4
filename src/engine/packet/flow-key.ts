import { formatAddress } from '../../core/address.js';
import { IpProtocol } from './constants.js';
import { ipv6Walk, walkIpv6Extensions } from './ipv6.js';
import type { PacketView } from './view.js';

/**
 * A 5-tuple (protocol, src, dst, src port, dst port) as a short string for Map keys:
 * one UTF-16 code unit per 16 bits — 7 units for IPv4, 19 for IPv6 — so V8 hashes and
 * compares it cheaply. The first unit is `version << 8 | protocol`, so IPv4 and IPv6
 * keys never collide. For ICMP echo both ports are the identifier (the reply carries the
 * same one), for other port-less protocols and for fragments (whose ports need
 * reassembly) both are 0.
 *
 * (A number cannot hold 104+ bits without BigInt, which costs more than a short string.)
 */
export type FlowKey = string;

/** The key of the flow `view` belongs to, as seen from its sender. */
export function flowKey(view: PacketView): FlowKey {
  return keyAt(view, false);
}

/** The key of the opposite direction: what the replies to `view` will have as {@link flowKey}. */
export function reverseFlowKey(view: PacketView): FlowKey {
  return keyAt(view, true);
}

function keyAt(view: PacketView, reverse: boolean): FlowKey {
  const b = view.buf;
  const echoOrPorts = view.srcPort;
  const sport = reverse ? view.dstPort : echoOrPorts;
  const dport = reverse ? echoOrPorts : view.dstPort;
  if (view.version === 4) {
    const s = reverse ? 16 : 12;
    const d = reverse ? 12 : 16;
    return String.fromCharCode(
      0x400 | view.protocol,
      (b[s] << 8) | b[s + 1],
      (b[s + 2] << 8) | b[s + 3],
      (b[d] << 8) | b[d + 1],
      (b[d + 2] << 8) | b[d + 3],
      sport,
      dport,
    );
  }
  const s = reverse ? 24 : 8;
  const d = reverse ? 8 : 24;
  return String.fromCharCode(
    0x600 | view.protocol,
    (b[s] << 8) | b[s + 1],
    (b[s + 2] << 8) | b[s + 3],
    (b[s + 4] << 8) | b[s + 5],
    (b[s + 6] << 8) | b[s + 7],
    (b[s + 8] << 8) | b[s + 9],
    (b[s + 10] << 8) | b[s + 11],
    (b[s + 12] << 8) | b[s + 13],
    (b[s + 14] << 8) | b[s + 15],
    (b[d] << 8) | b[d + 1],
    (b[d + 2] << 8) | b[d + 3],
    (b[d + 4] << 8) | b[d + 5],
    (b[d + 6] << 8) | b[d + 7],
    (b[d + 8] << 8) | b[d + 9],
    (b[d + 10] << 8) | b[d + 11],
    (b[d + 12] << 8) | b[d + 13],
    (b[d + 14] << 8) | b[d + 15],
    sport,
    dport,
  );
}

/**
 * For an ICMP/ICMPv6 error, the key of the flow whose packet it quotes, as that packet's
 * sender saw it ({@link flowKey} of the quoted packet): how an error such as "packet too
 * big" finds its flow. The quote may be truncated — RFC 792 only promises the IP header
 * and 8 bytes — so only the header(s) and the first 8 transport bytes are read.
 * Undefined when `view` is not an ICMP error, or its quote is too short, of the other IP
 * version, or has no ports to read (a non-initial fragment, a quote cut before them).
 */
export function quotedFlowKey(view: PacketView): FlowKey | undefined {
  if (!view.isIcmpError) return undefined;
  const buf = view.buf;
  const q = view.payloadOffset;
  const end = view.l4End;
  let protocol: number;
  let l4: number;
  let srcOffset: number;
  let addressLength: number;
  if (view.version === 4) {
    if (q + 20 > end || buf[q] >> 4 !== 4) return undefined;
    const headerLength = (buf[q] & 0x0f) * 4;
    if (headerLength < 20) return undefined;
    if ((((buf[q + 6] << 8) | buf[q + 7]) & 0x1fff) !== 0) return undefined; // non-initial fragment
    protocol = buf[q + 9];
    l4 = q + headerLength;
    srcOffset = q + 12;
    addressLength = 4;
  } else {
    if (q + 40 > end || buf[q] >> 4 !== 6) return undefined;
    if (walkIpv6Extensions(buf, q + 40, end, buf[q + 6]) !== undefined) return undefined;
    if (ipv6Walk.fragmentOffset !== 0) return undefined;
    protocol = ipv6Walk.next;
    l4 = ipv6Walk.offset;
    srcOffset = q + 8;
    addressLength = 16;
  }
  let srcPort = 0;
  let dstPort = 0;
  const icmpProtocol = view.version === 4 ? IpProtocol.ICMP : IpProtocol.ICMPV6;
  if (protocol === IpProtocol.TCP || protocol === IpProtocol.UDP) {
    if (l4 + 4 > end) return undefined;
    srcPort = (buf[l4] << 8) | buf[l4 + 1];
    dstPort = (buf[l4 + 2] << 8) | buf[l4 + 3];
  } else if (protocol === icmpProtocol) {
    if (l4 + 8 > end) return undefined;
    const type = buf[l4];
    const echo = view.version === 4 ? type === 8 || type === 0 : type === 128 || type === 129;
    if (echo) srcPort = dstPort = (buf[l4 + 4] << 8) | buf[l4 + 5];
  }
  const units: number[] = [((view.version === 4 ? 4 : 6) << 8) | protocol];
  for (let i = 0; i < 2 * addressLength; i += 2) units.push((buf[srcOffset + i] << 8) | buf[srcOffset + i + 1]);
  units.push(srcPort, dstPort);
  return String.fromCharCode(...units);
}

/**
 * The key for a tuple held outside a packet (a NAT mapping, a downgraded flow); equal to
 * {@link flowKey} of a packet with that tuple.
 */
export function flowKeyOf(protocol: number, src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number): FlowKey {
  if (src.length !== dst.length || (src.length !== 4 && src.length !== 16)) {
    throw new RangeError(`src and dst must both be 4 or 16 bytes, got ${src.length} and ${dst.length}`);
  }
  const units: number[] = [((src.length === 4 ? 4 : 6) << 8) | (protocol & 0xff)];
  for (let i = 0; i < src.length; i += 2) units.push((src[i] << 8) | src[i + 1]);
  for (let i = 0; i < dst.length; i += 2) units.push((dst[i] << 8) | dst[i + 1]);
  units.push(srcPort & 0xffff, dstPort & 0xffff);
  return String.fromCharCode(...units);
}

/** The parts of a key, with fresh address Buffers. */
export interface FlowTuple {
  version: 4 | 6;
  protocol: number;
  src: Buffer;
  dst: Buffer;
  srcPort: number;
  dstPort: number;
}

/** Decodes a key made by this module; throws RangeError for any other string. */
export function parseFlowKey(key: FlowKey): FlowTuple {
  const head = key.charCodeAt(0);
  const version = head >> 8;
  const addressLength = version === 4 ? 4 : version === 6 ? 16 : 0;
  if (addressLength === 0 || key.length !== 3 + addressLength) throw new RangeError('not a flow key');
  const words = addressLength / 2;
  const address = (first: number): Buffer => {
    const out = Buffer.alloc(addressLength);
    for (let i = 0; i < words; i++) out.writeUInt16BE(key.charCodeAt(first + i), 2 * i);
    return out;
  };
  return {
    version: version as 4 | 6,
    protocol: head & 0xff,
    src: address(1),
    dst: address(1 + words),
    srcPort: key.charCodeAt(1 + 2 * words),
    dstPort: key.charCodeAt(2 + 2 * words),
  };
}

/** A key for logs: `tcp 198.18.0.1:40000 > 198.18.2.3:80`, `icmp 198.18.0.1 > 198.18.2.3 id 7`. */
export function describeFlowKey(key: FlowKey): string {
  const t = parseFlowKey(key);
  const name = PROTOCOL_NAMES[t.protocol] ?? `proto-${t.protocol}`;
  const src = formatAddress(t.src);
  const dst = formatAddress(t.dst);
  if (t.protocol === IpProtocol.TCP || t.protocol === IpProtocol.UDP) {
    return t.version === 6 ? `${name} [${src}]:${t.srcPort} > [${dst}]:${t.dstPort}` : `${name} ${src}:${t.srcPort} > ${dst}:${t.dstPort}`;
  }
  const id = t.srcPort !== 0 ? ` id ${t.srcPort}` : '';
  return `${name} ${src} > ${dst}${id}`;
}

const PROTOCOL_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };
