import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildIcmpEcho,
  buildTcp,
  buildUdp,
  computeIpv4HeaderChecksum,
  computeTransportChecksum,
  decrementTtl,
  flowKey,
  foldSum,
  parseAddress,
  pseudoHeaderSumAt,
  rewriteDestination,
  rewriteSource,
  TransportKind,
  verifyIpv4HeaderChecksum,
  verifyTransportChecksum,
} from '../../../src/engine/packet/index.js';
import { ipv4Address, ipv6Address, kernelPacket, loadKernelPackets, parseOk, port, validPacket } from './helpers.js';

const capture = loadKernelPackets();

/** Checksums after an incremental rewrite must equal a from-scratch computation. */
function expectChecksumsEqualRecomputation(buf: Buffer): void {
  const view = parseOk(buf);
  if (view.version === 4) expect(view.ipChecksum).toBe(computeIpv4HeaderChecksum(view));
  if (view.transport !== TransportKind.None) {
    if (view.transport === TransportKind.Udp && view.version === 4 && view.l4Checksum === 0) return;
    expect(view.l4Checksum).toBe(computeTransportChecksum(view));
  }
  expect(verifyIpv4HeaderChecksum(view)).toBe(true);
  expect(verifyTransportChecksum(view)).toBe(true);
}

describe('NAT rewrite with RFC 1624 incremental checksums', () => {
  it('equals full recomputation for any TCP/UDP/ICMP-echo packet, address and port (property)', () => {
    const scenario = validPacket.chain((packet) =>
      fc.record({
        packet: fc.constant(packet),
        address: packet[0] >> 4 === 4 ? ipv4Address : ipv6Address,
        port,
        side: fc.constantFrom('source', 'destination'),
        withPort: fc.boolean(),
      }),
    );
    fc.assert(
      fc.property(scenario, ({ packet, address, port: newPort, side, withPort }) => {
        const view = parseOk(packet);
        const rewrite = side === 'source' ? rewriteSource : rewriteDestination;
        expect(rewrite(view, address, withPort ? newPort : undefined)).toBe(true);
        expect((side === 'source' ? view.src : view.dst).equals(address)).toBe(true);
        if (withPort) expect(side === 'source' ? view.srcPort : view.dstPort).toBe(newPort);
        expectChecksumsEqualRecomputation(packet);
      }),
      { numRuns: 20_000 },
    );
  });

  it('an ICMPv4 message of zeros keeps its all-ones checksum through a rewrite (the property found it)', () => {
    // An echo reply with id, sequence and data 0: its words sum to zero, so its checksum is 0xffff,
    // and RFC 1624's incremental update alone would write 0x0000 (invalid) for it.
    for (const [address, id] of [
      ['0.0.0.0', undefined],
      ['198.18.0.9', undefined],
      ['198.18.0.9', 0],
    ] as const) {
      const buf = buildIcmpEcho({ src: parseAddress('198.18.0.1'), dst: parseAddress('0.0.0.0'), id: 0, seq: 0, reply: true });
      const view = parseOk(buf);
      expect(view.l4Checksum).toBe(0xffff);
      expect(rewriteSource(view, parseAddress(address), id)).toBe(true);
      expectChecksumsEqualRecomputation(buf);
    }
  });

  it('keeps kernel packets valid through a full NAT round trip (out and back)', () => {
    const inside = parseAddress('198.19.255.1');
    for (const name of ['tcp4-syn', 'tcp4-data', 'udp4-odd', 'udp4-empty', 'icmp4-echo-request', 'udp4-ip-options']) {
      const original = kernelPacket(capture, name);
      const buf = Buffer.from(original);
      const view = parseOk(buf);
      const [oldSrc, oldPort] = [Buffer.from(view.src), view.srcPort];
      rewriteSource(view, inside, 61000);
      expectChecksumsEqualRecomputation(buf);
      rewriteSource(view, oldSrc, oldPort);
      expect(buf.toString('hex'), name).toBe(original.toString('hex'));
    }
    for (const name of ['tcp6-syn', 'udp6-odd', 'icmp6-echo-request', 'udp6-extension-headers']) {
      const buf = kernelPacket(capture, name);
      rewriteDestination(parseOk(buf), parseAddress('2001:db8:ffff::9'), 4242);
      expectChecksumsEqualRecomputation(buf);
    }
  });

  it('leaves an IPv4 UDP "no checksum" (0) as 0, and never writes a computed 0 for UDP', () => {
    const buf = buildUdp({ src: parseAddress('198.18.0.1'), dst: parseAddress('198.18.0.2'), srcPort: 1, dstPort: 2, checksum: false });
    const view = parseOk(buf);
    rewriteSource(view, parseAddress('198.19.0.7'), 999);
    expect(view.l4Checksum).toBe(0);
    expect(verifyTransportChecksum(view)).toBe(true);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), (newPort) => {
        const udp = parseOk(buildUdp({ src: parseAddress('198.18.0.1'), dst: parseAddress('198.18.0.2'), srcPort: 7, dstPort: 9 }));
        rewriteSource(udp, udp.src, newPort);
        expect(udp.l4Checksum).not.toBe(0);
        expect(verifyTransportChecksum(udp)).toBe(true);
      }),
      { numRuns: 65536 / 8 },
    );
  });

  it('updates only the pseudo-header part of a partial (offloaded) checksum', () => {
    const buf = buildTcp({ src: parseAddress('198.18.0.1'), dst: parseAddress('198.18.0.2'), srcPort: 1, dstPort: 2, seq: 5, flags: 2 });
    const view = parseOk(buf);
    const partialOf = (): number => foldSum(pseudoHeaderSumAt(buf, 12, 4, 6, view.length - view.l4Offset));
    buf.writeUInt16BE(partialOf(), 36); // as a TUN with IFF_VNET_HDR hands it over
    rewriteSource(view, parseAddress('198.19.7.7'), 5555, 'partial');
    rewriteDestination(view, parseAddress('198.19.8.8'), 80, 'partial');
    expect(view.l4Checksum % 0xffff).toBe(partialOf() % 0xffff);
    expect(verifyIpv4HeaderChecksum(view)).toBe(true);
  });

  it('refuses fragments and port changes on packets without ports, changing nothing', () => {
    const fragment = kernelPacket(capture, 'udp4-fragment-1');
    const before = fragment.toString('hex');
    expect(rewriteSource(parseOk(fragment), parseAddress('198.19.0.1'))).toBe(false);
    const unreachable = kernelPacket(capture, 'icmp4-port-unreachable');
    const unreachableBefore = unreachable.toString('hex');
    expect(rewriteDestination(parseOk(unreachable), parseAddress('198.19.0.1'), 80)).toBe(false);
    expect(fragment.toString('hex') + unreachable.toString('hex')).toBe(before + unreachableBefore);
    // Without a port an ICMP error's addresses can change (its checksum has no pseudo-header).
    expect(rewriteDestination(parseOk(unreachable), parseAddress('198.19.0.1'))).toBe(true);
    expectChecksumsEqualRecomputation(unreachable);
  });

  it('throws on an address of the wrong family (a caller bug, not bad input)', () => {
    expect(() => rewriteSource(parseOk(kernelPacket(capture, 'udp4-odd')), parseAddress('2001:db8::1'))).toThrow(RangeError);
  });

  it('moves the flow key with the rewrite', () => {
    const buf = kernelPacket(capture, 'tcp4-syn');
    const view = parseOk(buf);
    rewriteDestination(view, parseAddress('198.19.0.1'), 443);
    expect(flowKey(view)).toBe(flowKey(parseOk(Buffer.from(buf))));
  });
});

describe('decrementTtl', () => {
  it('decrements TTL / hop limit with a correct IPv4 checksum, and refuses at 1', () => {
    for (let ttl = 0; ttl <= 255; ttl++) {
      const buf = buildUdp({ src: parseAddress('198.18.0.1'), dst: parseAddress('198.18.0.2'), srcPort: 1, dstPort: 2, ttl });
      const view = parseOk(buf);
      expect(decrementTtl(view)).toBe(ttl > 1);
      expect(view.ttl).toBe(ttl > 1 ? ttl - 1 : ttl);
      expect(view.ipChecksum).toBe(computeIpv4HeaderChecksum(view));
    }
    const v6 = parseOk(kernelPacket(capture, 'udp6-odd'));
    const hopLimit = v6.ttl;
    expect(decrementTtl(v6)).toBe(true);
    expect(v6.ttl).toBe(hopLimit - 1);
  });
});

describe('partial mode and ICMP', () => {
  it('keeps updating ICMP echo checksums fully, since devices never offload them', () => {
    for (const name of ['icmp4-echo-request', 'icmp6-echo-request']) {
      const buf = kernelPacket(capture, name);
      const view = parseOk(buf);
      rewriteSource(view, view.version === 4 ? parseAddress('198.19.0.1') : parseAddress('2001:db8:ffff::1'), 777, 'partial');
      expectChecksumsEqualRecomputation(buf);
    }
  });
});
