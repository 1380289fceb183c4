// Checks the packet layer against packets the Linux kernel built (see
// test/fixtures/packet/capture-kernel-packets.py): parsing, checksum verification and
// recomputation, and byte-for-byte reproduction of kernel packets by the builders.
import { describe, expect, it } from 'vitest';
import {
  buildIcmpEcho,
  buildIcmpUnreachable,
  buildTcp,
  buildUdp,
  computeIpv4HeaderChecksum,
  computeTransportChecksum,
  IpProtocol,
  parseAddress,
  TcpFlag,
  TransportKind,
  verifyIpv4HeaderChecksum,
  verifyTransportChecksum,
} from '../../../src/engine/packet/index.js';
import { kernelPacket, loadKernelPackets, parseOk } from './helpers.js';

const capture = loadKernelPackets();
const HOST4 = parseAddress('198.18.0.1');
const PEER4 = parseAddress('198.18.0.2');
const HOST6 = parseAddress('2001:db8::1');

describe('kernel-built packets', () => {
  it.each(capture.packets.map((p) => [p.name, p] as const))('%s parses and its checksums verify', (_name, packet) => {
    const view = parseOk(Buffer.from(packet.bytes));
    expect(view.length).toBe(packet.bytes.length);
    expect(verifyIpv4HeaderChecksum(view)).toBe(true);
    expect(verifyTransportChecksum(view)).toBe(true);
    if (view.version === 4) expect(computeIpv4HeaderChecksum(view)).toBe(view.ipChecksum);
    if (!view.isFragment) expect(computeTransportChecksum(view)).toBe(view.l4Checksum);
  });

  it('reads a kernel SYN: ports, seq, flags, options length', () => {
    const v4 = parseOk(kernelPacket(capture, 'tcp4-syn'));
    expect(v4.transport).toBe(TransportKind.Tcp);
    expect(v4.dstPort).toBe(8080);
    expect(v4.tcpFlags).toBe(TcpFlag.SYN);
    expect(v4.tcpAck).toBe(0);
    expect(v4.tcpOptionsLength).toBe(20); // MSS, SACK-permitted, timestamps, window scale
    expect(v4.payloadLength).toBe(0);
    expect(v4.src.equals(HOST4)).toBe(true);
    expect(v4.dst.equals(PEER4)).toBe(true);
    const v6 = parseOk(kernelPacket(capture, 'tcp6-syn'));
    expect(v6.version).toBe(6);
    expect(v6.dstPort).toBe(8080);
    expect(v6.src.equals(HOST6)).toBe(true);
  });

  it('reads the payload of a kernel data segment as a view', () => {
    const buf = kernelPacket(capture, 'tcp4-data');
    const view = parseOk(buf);
    expect(view.tcpFlags).toBe(TcpFlag.PSH | TcpFlag.ACK);
    expect(view.payload.toString()).toBe('GET / HTTP/1.1\r\nHost: 198.18.0.2\r\n\r\n');
    expect(view.payload.buffer).toBe(buf.buffer); // zero-copy
  });

  it('marks every IPv4 and IPv6 fragment, the first included, and leaves L4 unparsed', () => {
    for (const version of [4, 6]) {
      const pieces = [0, 1, 2].map((i) => parseOk(kernelPacket(capture, `udp${version}-fragment-${i}`)));
      for (const piece of pieces) {
        expect(piece.isFragment).toBe(true);
        expect(piece.transport).toBe(TransportKind.None);
        expect(piece.protocol).toBe(IpProtocol.UDP);
        expect(piece.srcPort).toBe(0);
      }
      expect(pieces.map((p) => p.moreFragments)).toEqual([true, true, false]);
      expect(pieces[0].fragmentOffset).toBe(0);
      // The offsets tile the 3008-byte datagram exactly.
      let next = 0;
      for (const piece of pieces) {
        expect(piece.fragmentOffset).toBe(next);
        next += piece.payloadLength;
      }
      expect(next).toBe(3008);
    }
  });

  it('skips IPv4 options and walks IPv6 hop-by-hop and destination options headers', () => {
    const v4 = parseOk(kernelPacket(capture, 'udp4-ip-options'));
    expect(v4.ipHeaderLength).toBe(32);
    expect(v4.l4Offset).toBe(32);
    expect(v4.payload.toString()).toBe('with options');
    const v6 = parseOk(kernelPacket(capture, 'udp6-extension-headers'));
    expect(v6.l4Offset).toBe(56);
    expect(v6.protocol).toBe(IpProtocol.UDP);
    expect(v6.payload.toString()).toBe('with extension headers');
  });

  it('reads ICMP echo identifiers as the flow ports', () => {
    for (const name of ['icmp4-echo-request', 'icmp6-echo-request', 'icmp4-echo-reply', 'icmp6-echo-reply']) {
      const view = parseOk(kernelPacket(capture, name));
      expect(view.isEcho).toBe(true);
      expect(view.srcPort).toBe(view.echoId);
      expect(view.dstPort).toBe(view.echoId);
    }
    expect(parseOk(kernelPacket(capture, 'icmp4-echo-reply')).echoId).toBe(0x4242);
    expect(parseOk(kernelPacket(capture, 'icmp6-echo-reply')).echoSeq).toBe(7);
  });
});

describe('builders reproduce kernel packets byte for byte', () => {
  it('buildTcp = the kernel SYN (IPv4 and IPv6)', () => {
    for (const name of ['tcp4-syn', 'tcp6-syn', 'tcp4-syn-ack', 'tcp6-syn-ack', 'tcp4-data', 'tcp4-rst', 'tcp6-rst']) {
      const kernel = kernelPacket(capture, name);
      const v = parseOk(kernel);
      const built = buildTcp({
        src: v.src,
        dst: v.dst,
        ttl: v.ttl,
        ...ipFieldsOf(kernel),
        srcPort: v.srcPort,
        dstPort: v.dstPort,
        seq: v.tcpSeq,
        ack: v.tcpAck,
        flags: v.tcpFlags,
        window: v.tcpWindow,
        options: kernel.subarray(v.l4Offset + 20, v.payloadOffset),
        payload: v.payload,
      });
      expect(built.toString('hex'), name).toBe(kernel.toString('hex'));
    }
  });

  it('buildUdp = the kernel datagrams, odd and empty payloads included', () => {
    for (const name of ['udp4-odd', 'udp6-odd', 'udp4-empty', 'udp6-empty']) {
      const kernel = kernelPacket(capture, name);
      const v = parseOk(kernel);
      const built = buildUdp({ src: v.src, dst: v.dst, ttl: v.ttl, ...ipFieldsOf(kernel), srcPort: v.srcPort, dstPort: v.dstPort, payload: v.payload });
      expect(built.toString('hex'), name).toBe(kernel.toString('hex'));
    }
  });

  it('buildIcmpEcho = the kernel echo requests and replies', () => {
    for (const name of ['icmp4-echo-request', 'icmp6-echo-request', 'icmp4-echo-reply', 'icmp6-echo-reply']) {
      const kernel = kernelPacket(capture, name);
      const v = parseOk(kernel);
      const built = buildIcmpEcho({
        src: v.src,
        dst: v.dst,
        ttl: v.ttl,
        ...ipFieldsOf(kernel),
        id: v.echoId,
        seq: v.echoSeq,
        reply: name.endsWith('reply'),
        payload: v.payload,
      });
      expect(built.toString('hex'), name).toBe(kernel.toString('hex'));
    }
  });

  it('buildIcmpUnreachable = the kernel port unreachable, quote truncation included', () => {
    const cases = [
      ['udp4-to-closed-port', 'icmp4-port-unreachable'],
      ['udp6-to-closed-port', 'icmp6-port-unreachable'],
      ['udp4-large-to-closed-port', 'icmp4-port-unreachable-truncated'],
      ['udp6-large-to-closed-port', 'icmp6-port-unreachable-truncated'],
    ];
    for (const [originalName, errorName] of cases) {
      const kernel = kernelPacket(capture, errorName);
      const fields = ipFieldsOf(kernel);
      // Only the per-packet IPv4 id and IPv6 flow label are the kernel's choice; the rest are our defaults.
      const built = buildIcmpUnreachable(kernelPacket(capture, originalName), 'port', { identification: fields.identification, flowLabel: fields.flowLabel });
      expect(built?.toString('hex'), errorName).toBe(kernel.toString('hex'));
    }
    expect(kernelPacket(capture, 'icmp4-port-unreachable-truncated').length).toBe(576);
    expect(kernelPacket(capture, 'icmp6-port-unreachable-truncated').length).toBe(1280);
  });
});

/** The IP header fields a builder needs besides addresses and TTL. */
function ipFieldsOf(packet: Buffer): { tos: number; identification: number; dontFragment: boolean; flowLabel: number } {
  if (packet[0] >> 4 === 4) {
    return { tos: packet[1], identification: packet.readUInt16BE(4), dontFragment: (packet[6] & 0x40) !== 0, flowLabel: 0 };
  }
  const first = packet.readUInt32BE(0);
  return { tos: (first >>> 20) & 0xff, identification: 0, dontFragment: true, flowLabel: first & 0xfffff };
}
