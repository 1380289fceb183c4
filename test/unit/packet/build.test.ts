import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildIcmpPacketTooBig,
  buildIcmpTimeExceeded,
  buildIcmpUnreachable,
  buildTcp,
  buildUdp,
  parseAddress,
  parsePacket,
  TransportKind,
  verifyIpv4HeaderChecksum,
  verifyTransportChecksum,
} from '../../../src/engine/packet/index.js';
import { ipv4Address, ipv6Address, kernelPacket, loadKernelPackets, parseOk, port } from './helpers.js';

const capture = loadKernelPackets();
const A4 = parseAddress('198.18.0.1');
const B4 = parseAddress('198.18.2.3');
const A6 = parseAddress('2001:db8::1');
const B6 = parseAddress('2001:db8::2:3');

describe('build → parse round trips', () => {
  const addresses = fc.oneof(fc.tuple(ipv4Address, ipv4Address), fc.tuple(ipv6Address, ipv6Address));

  it('TCP: every field comes back, checksums verify', () => {
    fc.assert(
      fc.property(
        addresses,
        port,
        port,
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 255 }),
        port,
        fc.uint8Array({ maxLength: 40 }),
        fc.uint8Array({ maxLength: 1500 }),
        ([src, dst], srcPort, dstPort, seq, ack, flags, window, options, payload) => {
          const view = parseOk(buildTcp({ src, dst, srcPort, dstPort, seq, ack, flags, window, options, payload }));
          expect(view.transport).toBe(TransportKind.Tcp);
          expect([view.srcPort, view.dstPort, view.tcpSeq, view.tcpAck, view.tcpFlags, view.tcpWindow]).toEqual([srcPort, dstPort, seq, ack, flags, window]);
          expect(view.tcpOptionsLength).toBe(Math.ceil(options.length / 4) * 4);
          expect(view.src.equals(src) && view.dst.equals(dst)).toBe(true);
          expect(view.payload.equals(payload)).toBe(true);
          expect(verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view)).toBe(true);
        },
      ),
    );
  });

  it('UDP: ports and payload come back, checksums verify', () => {
    fc.assert(
      fc.property(addresses, port, port, fc.uint8Array({ maxLength: 1500 }), fc.nat({ max: 255 }), ([src, dst], srcPort, dstPort, payload, ttl) => {
        const view = parseOk(buildUdp({ src, dst, srcPort, dstPort, payload, ttl }));
        expect([view.srcPort, view.dstPort, view.ttl, view.udpLength]).toEqual([srcPort, dstPort, ttl, 8 + payload.length]);
        expect(view.payload.equals(payload)).toBe(true);
        expect(view.l4Checksum).not.toBe(0);
        expect(verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view)).toBe(true);
      }),
    );
  });

  it('refuses to build what cannot be sent', () => {
    expect(() => buildUdp({ src: A4, dst: A6, srcPort: 1, dstPort: 2 })).toThrow(RangeError);
    expect(() => buildUdp({ src: A4, dst: B4, srcPort: 1, dstPort: 2, payload: Buffer.alloc(65535) })).toThrow(RangeError);
    expect(() => buildTcp({ src: A4, dst: B4, srcPort: 1, dstPort: 2, seq: 0, flags: 2, options: Buffer.alloc(41) })).toThrow(RangeError);
  });
});

describe('ICMP errors', () => {
  it('answers a TCP SYN with host unreachable: addressed back, quoting header + data', () => {
    const syn = buildTcp({ src: A4, dst: B4, srcPort: 40000, dstPort: 80, seq: 1, flags: 2 });
    const error = buildIcmpUnreachable(syn)!;
    const view = parseOk(error);
    expect([view.icmpType, view.icmpCode, view.ttl]).toEqual([3, 1, 64]);
    expect(view.src.equals(B4) && view.dst.equals(A4)).toBe(true);
    expect(view.payload.equals(syn)).toBe(true);
    expect(error[1]).toBe(0xc0);
    expect(verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view)).toBe(true);
    // The quoted packet is the original flow: a NAT can find it by parsing the quote.
    expect(parseOk(Buffer.from(view.payload)).dstPort).toBe(80);
  });

  it('maps reasons to ICMP and ICMPv6 codes and honours `from`', () => {
    const v4 = buildUdp({ src: A4, dst: B4, srcPort: 1, dstPort: 2 });
    const v6 = buildUdp({ src: A6, dst: B6, srcPort: 1, dstPort: 2 });
    const codes = (['network', 'host', 'port', 'prohibited'] as const).map((reason) => [
      parseOk(buildIcmpUnreachable(v4, reason)!).icmpCode,
      parseOk(buildIcmpUnreachable(v6, reason)!).icmpCode,
    ]);
    expect(codes).toEqual([
      [0, 0],
      [1, 3],
      [3, 4],
      [13, 1],
    ]);
    expect(parseOk(buildIcmpUnreachable(v6)!).icmpType).toBe(1);
    const router = parseAddress('198.18.255.254');
    expect(parseOk(buildIcmpUnreachable(v4, 'network', { from: router })!).src.equals(router)).toBe(true);
  });

  it('builds packet-too-big and time-exceeded with the MTU where the RFCs put it', () => {
    const v4 = buildTcp({ src: A4, dst: B4, srcPort: 1, dstPort: 2, seq: 0, flags: 0x10, payload: Buffer.alloc(1400) });
    const tooBig4 = parseOk(buildIcmpPacketTooBig(v4, 1280)!);
    expect([tooBig4.icmpType, tooBig4.icmpCode, tooBig4.buf.readUInt16BE(tooBig4.l4Offset + 6)]).toEqual([3, 4, 1280]);
    expect(tooBig4.length).toBe(576);
    const v6 = buildTcp({ src: A6, dst: B6, srcPort: 1, dstPort: 2, seq: 0, flags: 0x10, payload: Buffer.alloc(1400) });
    const tooBig6 = parseOk(buildIcmpPacketTooBig(v6, 1280)!);
    expect([tooBig6.icmpType, tooBig6.buf.readUInt32BE(tooBig6.l4Offset + 4), tooBig6.length]).toEqual([2, 1280, 1280]);
    expect(parseOk(buildIcmpTimeExceeded(v4)!).icmpType).toBe(11);
    expect(parseOk(buildIcmpTimeExceeded(v6)!).icmpType).toBe(3);
    for (const buf of [tooBig6.buf]) expect(verifyTransportChecksum(parseOk(buf))).toBe(true);
  });

  it('stays silent where RFC 1122 §3.2.2 and RFC 4443 §2.4 forbid an error', () => {
    expect(buildIcmpUnreachable(kernelPacket(capture, 'icmp4-port-unreachable'))).toBeNull(); // an error itself
    expect(buildIcmpUnreachable(kernelPacket(capture, 'icmp6-port-unreachable'))).toBeNull();
    expect(buildIcmpUnreachable(kernelPacket(capture, 'udp4-fragment-1'))).toBeNull(); // non-initial fragment
    expect(buildIcmpUnreachable(kernelPacket(capture, 'udp6-fragment-2'))).toBeNull();
    expect(buildIcmpUnreachable(kernelPacket(capture, 'udp4-fragment-0'))).not.toBeNull(); // first fragment: fine
    expect(buildIcmpUnreachable(kernelPacket(capture, 'icmp4-echo-request'))).not.toBeNull(); // queries: fine
    const to = (dst: string, src = '198.18.0.1'): Buffer => buildUdp({ src: parseAddress(src), dst: parseAddress(dst), srcPort: 1, dstPort: 2 });
    expect(buildIcmpUnreachable(to('224.0.0.251'))).toBeNull();
    expect(buildIcmpUnreachable(to('255.255.255.255'))).toBeNull();
    expect(buildIcmpUnreachable(to('198.18.0.2', '0.0.0.0'))).toBeNull();
    expect(buildIcmpUnreachable(to('198.18.0.2', '224.0.0.1'))).toBeNull();
    expect(buildIcmpUnreachable(to('ff02::fb', '2001:db8::1'))).toBeNull();
    expect(buildIcmpPacketTooBig(to('ff02::fb', '2001:db8::1'), 1280)).not.toBeNull(); // the one exception
    expect(buildIcmpUnreachable(to('2001:db8::2', '::'))).toBeNull();
    expect(buildIcmpUnreachable(Buffer.from([0x45, 0, 0]))).toBeNull(); // malformed
  });

  it('always builds a valid packet when it builds one (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 1600 }), fc.boolean(), (bytes, v6) => {
        const buf = Buffer.from(bytes);
        buf[0] = v6 ? 0x60 : 0x45;
        if (v6) buf.writeUInt16BE(Math.min(buf.length - 40, 0xffff) & 0xffff, 4);
        else buf.writeUInt16BE(buf.length, 2);
        const error = buildIcmpUnreachable(buf, 'port');
        if (error === null) return;
        const view = parsePacket(error);
        expect(view.ok && verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view)).toBe(true);
        expect(error.length).toBeLessThanOrEqual(v6 ? 1280 : 576);
      }),
      { numRuns: 3000 },
    );
  });
});
