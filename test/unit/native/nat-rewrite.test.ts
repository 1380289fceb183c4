// The IP edge rewrites an upgraded TCP flow's packets in two places: the fast path in the addon
// (cpp/fastnat.cc ParseTcp + Rewrite, on the loop thread's read batches) and JS (packet/rewrite.ts
// rewriteSource + rewriteDestination, netns/upgrader.ts) for every packet the fast path leaves to it.
// Both update the IPv4 header's and TCP's checksums incrementally (RFC 1624), so a packet NATed by
// either must come out byte for byte the same, its checksums equal to a computation from scratch.
// Before, only the kernel accepting the fast path's packets (e2e/ip/fast-path) checked the C++.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';
import {
  buildTcp,
  computeIpv4HeaderChecksum,
  computeTransportChecksum,
  parsePacket,
  rewriteDestination,
  rewriteSource,
  TcpFlag,
  TransportKind,
} from '../../../src/engine/packet/index.js';
import { ipv4Address, ipv6Address, loadKernelPackets, parseOk, port, tcpPacket, udpPacket } from '../packet/helpers.js';

function viaJs(packet: Buffer, src: Buffer, srcPort: number, dst: Buffer, dstPort: number): Buffer {
  const out = Buffer.from(packet);
  const view = parseOk(out);
  expect(rewriteSource(view, src, srcPort)).toBe(true);
  expect(rewriteDestination(view, dst, dstPort)).toBe(true);
  return out;
}

function expectChecksumsFromScratch(packet: Buffer): void {
  const view = parseOk(packet);
  if (view.version === 4) expect(view.ipChecksum).toBe(computeIpv4HeaderChecksum(view));
  expect(view.l4Checksum).toBe(computeTransportChecksum(view));
}

const endpoints = (v6: boolean) => fc.tuple(v6 ? ipv6Address : ipv4Address, port, v6 ? ipv6Address : ipv4Address, port);

describe.skipIf(!nativeAvailable())("the fast path's NAT rewrite and JS's agree", () => {
  it('on generated TCP packets, IPv4 and IPv6: the same bytes, checksums as computed from scratch', () => {
    fc.assert(
      fc.property(
        tcpPacket.chain((packet) => fc.tuple(fc.constant(packet), endpoints(packet[0]! >> 4 === 6))),
        ([packet, [src, srcPort, dst, dstPort]]) => {
          const fast = native().natRewrite(packet, src, srcPort, dst, dstPort);
          expect(fast).toBeDefined();
          expect(fast!.toString('hex')).toBe(viaJs(packet, src, srcPort, dst, dstPort).toString('hex'));
          expectChecksumsFromScratch(fast!);
        },
      ),
      { numRuns: 3_000, seed: 24 },
    );
  });

  it('where the checksum words run to 0x0000 and 0xffff', () => {
    // Addresses and ports of all zeros and all ones move the sums across one's-complement's two zeros.
    for (const v6 of [false, true]) {
      const n = v6 ? 16 : 4;
      for (const [from, to] of [
        [0x00, 0xff],
        [0xff, 0x00],
        [0x00, 0x00],
        [0xff, 0xff],
      ] as const) {
        const packet = buildTcp({
          src: Buffer.alloc(n, from),
          dst: Buffer.alloc(n, from),
          srcPort: from * 0x101,
          dstPort: from * 0x101,
          seq: 0,
          flags: TcpFlag.ACK,
          window: 0,
        });
        const [src, dst, p] = [Buffer.alloc(n, to), Buffer.alloc(n, to), to * 0x101];
        const fast = native().natRewrite(packet, src, p, dst, p)!;
        expect(fast.toString('hex'), `${v6 ? 'v6' : 'v4'} ${from} → ${to}`).toBe(viaJs(packet, src, p, dst, p).toString('hex'));
        expectChecksumsFromScratch(fast);
      }
    }
  });

  it("on the kernel's own TCP packets (test/fixtures/packet)", () => {
    let compared = 0;
    for (const { name, bytes } of loadKernelPackets().packets) {
      const view = parsePacket(bytes);
      if (!view.ok || view.transport !== TransportKind.Tcp || view.isFragment) continue;
      const v6 = view.version === 6;
      const [src, dst] = v6
        ? [Buffer.from('20010db8000000000000000000000001', 'hex'), Buffer.from('20010db8000000000000000000000002', 'hex')]
        : [Buffer.from([198, 18, 0, 1]), Buffer.from([198, 18, 0, 2])];
      const fast = native().natRewrite(bytes, src, 40_000, dst, 80);
      if (fast === undefined) continue; // IPv4 options, IPv6 extension headers: left to JS
      expect(fast.toString('hex'), name).toBe(viaJs(bytes, src, 40_000, dst, 80).toString('hex'));
      compared++;
    }
    expect(compared).toBeGreaterThan(5);
  });

  it('leaves what is not plain TCP to JS', () => {
    fc.assert(
      fc.property(udpPacket, (packet) => {
        const n = packet[0]! >> 4 === 6 ? 16 : 4;
        expect(native().natRewrite(packet, Buffer.alloc(n), 1, Buffer.alloc(n), 2)).toBeUndefined();
      }),
      { numRuns: 200, seed: 24 },
    );
  });
});
