import { describe, expect, it } from 'vitest';
import {
  buildTcp,
  buildUdp,
  describePacket,
  fillChecksums,
  IpProtocol,
  MAX_IPV6_EXTENSION_HEADERS,
  PacketView,
  parseAddress,
  parsePacket,
  TransportKind,
  verifyTransportChecksum,
} from '../../../src/engine/packet/index.js';
import { parseOk } from './helpers.js';

const A4 = parseAddress('198.18.0.1');
const B4 = parseAddress('198.18.2.3');
const A6 = parseAddress('2001:db8::1');
const B6 = parseAddress('2001:db8::2:3');

const udp4 = (): Buffer => buildUdp({ src: A4, dst: B4, srcPort: 40000, dstPort: 53, payload: Buffer.from('query') });
const udp6 = (): Buffer => buildUdp({ src: A6, dst: B6, srcPort: 40000, dstPort: 53, payload: Buffer.from('query') });

function reason(buf: Buffer): string {
  const result = parsePacket(buf);
  return result.ok ? 'ok' : result.reason;
}

/** An IPv6 UDP packet with extension headers (raw bytes, each ending with its next header). */
function udp6With(extensions: { type: number; body: Buffer }[]): Buffer {
  const plain = udp6();
  const udp = plain.subarray(40);
  const chain: Buffer[] = [];
  for (let i = 0; i < extensions.length; i++) {
    const body = Buffer.from(extensions[i].body);
    body[0] = i + 1 < extensions.length ? extensions[i + 1].type : IpProtocol.UDP;
    chain.push(body);
  }
  const packet = Buffer.concat([plain.subarray(0, 40), ...chain, udp]);
  packet.writeUInt16BE(packet.length - 40, 4);
  packet[6] = extensions.length ? extensions[0].type : IpProtocol.UDP;
  return packet;
}
const optionsHeader = (eightByteUnits = 1): Buffer => {
  const body = Buffer.alloc(8 * eightByteUnits);
  body[1] = eightByteUnits - 1;
  body[2] = 1; // PadN
  body[3] = 8 * eightByteUnits - 4;
  return body;
};

describe('parsePacket: valid packets', () => {
  it('gives views, not copies', () => {
    const buf = udp4();
    const view = parseOk(buf);
    expect(view.payload.toString()).toBe('query');
    view.payload[0] = 0x51; // 'Q'
    expect(buf.subarray(28).toString()).toBe('Query');
    expect(view.src.buffer).toBe(buf.buffer);
  });

  it('reuses a caller-provided view', () => {
    const view = new PacketView();
    expect(parsePacket(udp4(), view)).toBe(view);
    expect(view.version).toBe(4);
    expect(parsePacket(udp6(), view)).toBe(view);
    expect(view.version).toBe(6);
    expect(view.dstPort).toBe(53);
  });

  it('ignores link padding after the IP total length', () => {
    const padded = Buffer.concat([udp4(), Buffer.alloc(10, 0xee)]);
    const view = parseOk(padded);
    expect(view.length).toBe(padded.length - 10);
    expect(view.payload.toString()).toBe('query');
    expect(verifyTransportChecksum(view)).toBe(true);
  });

  it('bounds the UDP payload by the UDP length when it is shorter than the IP room (as Linux trims)', () => {
    const buf = udp4();
    buf.writeUInt16BE(8 + 3, 24);
    const view = parseOk(buf);
    expect(view.payload.toString()).toBe('que');
    expect(view.l4End).toBe(20 + 11);
  });

  it('walks routing, destination options, AH and an atomic fragment header to UDP', () => {
    const routing = Buffer.alloc(24);
    routing[1] = 2; // 3 × 8 bytes
    const ah = Buffer.alloc(16);
    ah[1] = 2; // (2 + 2) × 4 = 16 bytes
    const atomicFragment = Buffer.alloc(8); // offset 0, M = 0 (RFC 6946)
    const packet = udp6With([
      { type: IpProtocol.HOP_BY_HOP, body: optionsHeader() },
      { type: IpProtocol.ROUTING, body: routing },
      { type: IpProtocol.FRAGMENT, body: atomicFragment },
      { type: IpProtocol.AH, body: ah },
      { type: IpProtocol.DESTINATION_OPTIONS, body: optionsHeader(2) },
    ]);
    const view = parseOk(packet);
    expect(view.l4Offset).toBe(40 + 8 + 24 + 8 + 16 + 16);
    expect(view.protocol).toBe(IpProtocol.UDP);
    expect(view.isFragment).toBe(false);
    expect(view.transport).toBe(TransportKind.Udp);
    expect(view.dstPort).toBe(53);
    expect(view.payload.toString()).toBe('query');
  });

  it('stops at ESP and at "no next header", leaving the rest opaque', () => {
    const esp = udp6();
    esp[6] = IpProtocol.ESP;
    const espView = parseOk(esp);
    expect(espView.protocol).toBe(IpProtocol.ESP);
    expect(espView.transport).toBe(TransportKind.None);
    expect(espView.payloadLength).toBe(esp.length - 40);
    const none = udp6();
    none[6] = IpProtocol.NO_NEXT_HEADER;
    expect(parseOk(none).srcPort).toBe(0);
  });

  it('marks an IPv4 first fragment (MF, offset 0) and a later one (offset ≠ 0)', () => {
    const first = udp4();
    first[6] |= 0x20;
    const firstView = parseOk(first);
    expect([firstView.isFragment, firstView.moreFragments, firstView.fragmentOffset]).toEqual([true, true, 0]);
    expect(firstView.transport).toBe(TransportKind.None);
    const later = udp4();
    later.writeUInt16BE(185, 6); // offset 185 × 8 = 1480, MF clear, DF clear
    const laterView = parseOk(later);
    expect([laterView.isFragment, laterView.moreFragments, laterView.fragmentOffset]).toEqual([true, false, 1480]);
  });

  it('leaves ICMP inside IPv6 and ICMPv6 inside IPv4 opaque', () => {
    const v6 = udp6();
    v6[6] = IpProtocol.ICMP;
    expect(parseOk(v6).transport).toBe(TransportKind.None);
    const v4 = udp4();
    v4[9] = IpProtocol.ICMPV6;
    expect(parseOk(v4).transport).toBe(TransportKind.None);
  });

  it('describes packets for logs', () => {
    expect(describePacket(parsePacket(udp4()))).toBe('udp 198.18.0.1:40000 > 198.18.2.3:53 len=5');
    const syn = buildTcp({ src: A6, dst: B6, srcPort: 1, dstPort: 80, seq: 9, flags: 0x02 });
    expect(describePacket(parsePacket(syn))).toBe('tcp [2001:db8::1]:1 > [2001:db8::2:3]:80 [S] seq=9 ack=0 win=65535 len=0');
    expect(describePacket(parsePacket(Buffer.from([0x45])))).toBe('malformed (ipv4-truncated-header)');
  });
});

describe('parsePacket: malformed packets come back with a reason', () => {
  it.each([
    ['empty', Buffer.alloc(0)],
    ['unknown-version', Buffer.from([0x50, 0, 0, 0])],
    ['ipv4-truncated-header', udp4().subarray(0, 19)],
    ['ipv6-truncated-header', udp6().subarray(0, 39)],
  ])('%s', (expected, buf) => expect(reason(buf)).toBe(expected));

  it('checks IHL and total length against each other and the buffer', () => {
    const lowIhl = udp4();
    lowIhl[0] = 0x44;
    expect(reason(lowIhl)).toBe('ipv4-bad-ihl');
    const ihlPastTotal = udp4();
    ihlPastTotal[0] = 0x4f; // 60-byte header in a 33-byte packet
    expect(reason(ihlPastTotal)).toBe('ipv4-bad-total-length');
    const totalPastBuffer = udp4();
    totalPastBuffer.writeUInt16BE(totalPastBuffer.length + 1, 2);
    expect(reason(totalPastBuffer)).toBe('ipv4-bad-total-length');
    expect(reason(udp4().subarray(0, 30))).toBe('ipv4-bad-total-length'); // truncated capture
  });

  it('checks the IPv6 payload length against the buffer', () => {
    const buf = udp6();
    buf.writeUInt16BE(buf.length - 40 + 1, 4);
    expect(reason(buf)).toBe('ipv6-bad-payload-length');
  });

  it('checks transport headers against the room the IP header gives them', () => {
    const syn = buildTcp({ src: A4, dst: B4, srcPort: 1, dstPort: 80, seq: 0, flags: 2 });
    const shortTcp = Buffer.from(syn.subarray(0, 39));
    shortTcp.writeUInt16BE(39, 2);
    expect(reason(shortTcp)).toBe('tcp-truncated');
    const lowOffset = Buffer.from(syn);
    lowOffset[32] = 0x40;
    expect(reason(lowOffset)).toBe('tcp-bad-data-offset');
    const highOffset = Buffer.from(syn);
    highOffset[32] = 0x60; // 24-byte header in a 20-byte segment
    expect(reason(highOffset)).toBe('tcp-bad-data-offset');

    const shortUdp = Buffer.from(udp4().subarray(0, 27));
    shortUdp.writeUInt16BE(27, 2);
    expect(reason(shortUdp)).toBe('udp-truncated');
    const longUdp = udp4();
    longUdp.writeUInt16BE(14, 24);
    expect(reason(longUdp)).toBe('udp-bad-length');
    const tinyUdp = udp4();
    tinyUdp.writeUInt16BE(7, 24);
    expect(reason(tinyUdp)).toBe('udp-bad-length');

    const icmp = Buffer.from(udp4().subarray(0, 27));
    icmp.writeUInt16BE(27, 2);
    icmp[9] = IpProtocol.ICMP;
    expect(reason(icmp)).toBe('icmp-truncated');
  });

  it('refuses broken IPv6 extension header chains', () => {
    const truncated = udp6With([{ type: IpProtocol.DESTINATION_OPTIONS, body: optionsHeader() }]);
    truncated[41] = 200; // claims 1608 bytes
    expect(reason(truncated)).toBe('ipv6-truncated-extension');
    const lateHopByHop = udp6With([
      { type: IpProtocol.DESTINATION_OPTIONS, body: optionsHeader() },
      { type: IpProtocol.HOP_BY_HOP, body: optionsHeader() },
    ]);
    expect(reason(lateHopByHop)).toBe('ipv6-hop-by-hop-not-first');
    const many = Array.from({ length: MAX_IPV6_EXTENSION_HEADERS + 1 }, () => ({
      type: IpProtocol.DESTINATION_OPTIONS,
      body: optionsHeader(),
    }));
    expect(reason(udp6With(many))).toBe('ipv6-too-many-extensions');
    expect(reason(udp6With(many.slice(1)))).toBe('ok');
  });

  it('returns one shared object per reason', () => {
    expect(parsePacket(Buffer.alloc(0))).toBe(parsePacket(Buffer.alloc(0)));
  });

  it('does not care about checksums: that is verify*()', () => {
    const buf = udp4();
    buf[27] ^= 0xff;
    const view = parseOk(buf);
    expect(verifyTransportChecksum(view)).toBe(false);
    fillChecksums(view);
    expect(verifyTransportChecksum(view)).toBe(true);
  });
});
