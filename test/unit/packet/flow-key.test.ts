import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildIcmp,
  buildIcmpEcho,
  buildIcmpUnreachable,
  buildTcp,
  buildUdp,
  describeFlowKey,
  flowKey,
  flowKeyOf,
  IpProtocol,
  parseAddress,
  parseFlowKey,
  quotedFlowKey,
  reverseFlowKey,
} from '../../../src/engine/packet/index.js';
import { kernelPacket, loadKernelPackets, parseOk, validPacket } from './helpers.js';

const capture = loadKernelPackets();

describe('flow keys', () => {
  it('pairs a packet with its reply: reverse(request) = key(reply)', () => {
    const src = parseAddress('198.18.0.1');
    const dst = parseAddress('198.18.2.3');
    const request = parseOk(buildTcp({ src, dst, srcPort: 40000, dstPort: 80, seq: 1, flags: 2 }));
    const reply = parseOk(buildTcp({ src: dst, dst: src, srcPort: 80, dstPort: 40000, seq: 9, ack: 2, flags: 0x12 }));
    expect(reverseFlowKey(request)).toBe(flowKey(reply));
    expect(reverseFlowKey(reply)).toBe(flowKey(request));
    expect(flowKey(request)).not.toBe(flowKey(reply));
  });

  it('pairs kernel echo requests with replies through the identifier', () => {
    const request = parseOk(kernelPacket(capture, 'icmp4-echo-request-in'));
    const reply = parseOk(kernelPacket(capture, 'icmp4-echo-reply'));
    expect(reverseFlowKey(request)).toBe(flowKey(reply));
    const request6 = parseOk(kernelPacket(capture, 'icmp6-echo-request-in'));
    const reply6 = parseOk(kernelPacket(capture, 'icmp6-echo-reply'));
    expect(reverseFlowKey(request6)).toBe(flowKey(reply6));
  });

  it('is short: 7 code units for IPv4, 19 for IPv6', () => {
    expect(flowKey(parseOk(kernelPacket(capture, 'udp4-odd')))).toHaveLength(7);
    expect(flowKey(parseOk(kernelPacket(capture, 'udp6-odd')))).toHaveLength(19);
  });

  it('separates protocols, families, addresses and ports', () => {
    const a = parseAddress('198.18.0.1');
    const b = parseAddress('198.18.0.2');
    const keys = new Set([
      flowKey(parseOk(buildUdp({ src: a, dst: b, srcPort: 1, dstPort: 2 }))),
      flowKey(parseOk(buildTcp({ src: a, dst: b, srcPort: 1, dstPort: 2, seq: 0, flags: 2 }))),
      flowKey(parseOk(buildUdp({ src: a, dst: b, srcPort: 2, dstPort: 1 }))),
      flowKey(parseOk(buildUdp({ src: b, dst: a, srcPort: 1, dstPort: 2 }))),
      flowKey(parseOk(buildUdp({ src: parseAddress('::ffff:198.18.0.1'), dst: parseAddress('::ffff:198.18.0.2'), srcPort: 1, dstPort: 2 }))),
      flowKey(parseOk(buildIcmpEcho({ src: a, dst: b, id: 1, seq: 1 }))),
    ]);
    expect(keys.size).toBe(6);
  });

  it('round-trips through flowKeyOf and parseFlowKey (property)', () => {
    fc.assert(
      fc.property(validPacket, (packet) => {
        const view = parseOk(packet);
        const key = flowKey(view);
        expect(flowKeyOf(view.protocol, view.src, view.dst, view.srcPort, view.dstPort)).toBe(key);
        expect(flowKeyOf(view.protocol, view.dst, view.src, view.dstPort, view.srcPort)).toBe(reverseFlowKey(view));
        const tuple = parseFlowKey(key);
        expect([tuple.version, tuple.protocol, tuple.srcPort, tuple.dstPort]).toEqual([view.version, view.protocol, view.srcPort, view.dstPort]);
        expect(tuple.src.equals(view.src) && tuple.dst.equals(view.dst)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('describes keys for logs', () => {
    expect(describeFlowKey(flowKeyOf(IpProtocol.TCP, parseAddress('198.18.0.1'), parseAddress('198.18.2.3'), 40000, 80))).toBe(
      'tcp 198.18.0.1:40000 > 198.18.2.3:80',
    );
    expect(describeFlowKey(flowKeyOf(IpProtocol.UDP, parseAddress('2001:db8::1'), parseAddress('2001:db8::2'), 5, 53))).toBe(
      'udp [2001:db8::1]:5 > [2001:db8::2]:53',
    );
    expect(describeFlowKey(flowKey(parseOk(kernelPacket(capture, 'icmp4-echo-reply'))))).toBe('icmp 198.18.0.1 > 198.18.0.2 id 16962');
    expect(() => parseFlowKey('nope')).toThrow(RangeError);
  });
});

describe('quotedFlowKey: the flow an ICMP error is about', () => {
  it('finds the flow of the packet the kernel quoted, whole or truncated', () => {
    for (const [original, error] of [
      ['udp4-to-closed-port', 'icmp4-port-unreachable'],
      ['udp6-to-closed-port', 'icmp6-port-unreachable'],
      ['udp4-large-to-closed-port', 'icmp4-port-unreachable-truncated'],
      ['udp6-large-to-closed-port', 'icmp6-port-unreachable-truncated'],
    ]) {
      expect(quotedFlowKey(parseOk(kernelPacket(capture, error)))).toBe(flowKey(parseOk(kernelPacket(capture, original))));
    }
  });

  it('needs no more than RFC 792 promises: the IP header and 8 bytes', () => {
    const syn = buildTcp({ src: parseAddress('198.18.0.1'), dst: parseAddress('198.18.2.3'), srcPort: 40000, dstPort: 80, seq: 1, flags: 2 });
    const error = buildIcmp({ src: parseAddress('198.18.2.3'), dst: parseAddress('198.18.0.1') }, 3, 4, 1400, syn.subarray(0, 28));
    expect(quotedFlowKey(parseOk(error))).toBe(flowKey(parseOk(syn)));
    const tooShort = buildIcmp({ src: parseAddress('198.18.2.3'), dst: parseAddress('198.18.0.1') }, 3, 4, 1400, syn.subarray(0, 22));
    expect(quotedFlowKey(parseOk(tooShort))).toBeUndefined();
  });

  it('pairs a quoted echo request with its flow, and ignores non-errors', () => {
    const ping = kernelPacket(capture, 'icmp6-echo-request');
    const error = buildIcmpUnreachable(ping, 'port')!;
    expect(quotedFlowKey(parseOk(error))).toBe(flowKey(parseOk(ping)));
    expect(quotedFlowKey(parseOk(ping))).toBeUndefined();
  });
});
