import { afterEach, describe, expect, it } from 'vitest';

import { FRAGMENT_OVERHEAD_BYTES, FlowTable, Reassembler, type FlowScope, type ReassemblyDrop, type ReassemblyLimits } from '../../../src/engine/flow/index.js';
import {
  IpProtocol,
  TcpFlag,
  TransportKind,
  buildFragment,
  buildIcmpReassemblyTimeExceeded,
  buildTcp,
  buildUdp,
  fragmentPacket,
  parseAddress,
  verifyIpv4HeaderChecksum,
  verifyTransportChecksum,
} from '../../../src/engine/packet/index.js';
import { kernelPacket, loadKernelPackets, parseOk } from '../packet/helpers.js';

const A4 = parseAddress('198.18.1.1');
const B4 = parseAddress('198.18.2.2');
const A6 = parseAddress('2001:db8:1::1');
const B6 = parseAddress('2001:db8:2::2');

const payload = (size: number, seed = 0): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + seed) & 0xff));
/** A whole UDP datagram as a sender builds it before fragmenting (DF clear: fragments carry none). */
const udp = (src: Buffer, dst: Buffer, size: number, seed = 0, identification = 0x1234): Buffer =>
  buildUdp({ src, dst, srcPort: 40000, dstPort: 7, payload: payload(size, seed), identification, dontFragment: false });

describe('Reassembler', () => {
  const tables: FlowTable[] = [];
  const reassemblers: Reassembler[] = [];
  afterEach(() => {
    for (const t of tables.splice(0)) t.close();
    for (const r of reassemblers.splice(0)) r.close();
  });

  function setup(limits: ReassemblyLimits = {}) {
    const table = new FlowTable();
    tables.push(table);
    const drops: ReassemblyDrop[] = [];
    const timeouts: { first: Buffer; attachment: unknown }[] = [];
    const r = new Reassembler({ limits, onDrop: (reason) => drops.push(reason), onTimeout: (first, attachment) => timeouts.push({ first, attachment }) });
    reassemblers.push(r);
    const scope = (tenant = 't1', vnet = ''): FlowScope => table.scope({ tenant, vnet });
    /** Feeds fragments in the given order; returns what the last call returned, checking earlier ones returned nothing. */
    const feed = (fragments: Buffer[], into = scope(), now = Date.now()): Buffer | undefined => {
      let result: Buffer | undefined;
      fragments.forEach((fragment, i) => {
        result = r.add(into, parseOk(fragment), `session-${i}`, now);
        if (i < fragments.length - 1) expect(result).toBeUndefined();
      });
      return result;
    };
    return { r, drops, timeouts, scope, feed };
  }

  for (const [version, src, dst, id] of [
    [4, A4, B4, 0x1234],
    [6, A6, B6, 0x89abcdef],
  ] as const) {
    describe(`IPv${version}`, () => {
      const whole = version === 4 ? udp(src, dst, 3000, 0, id) : udp(src, dst, 3000);
      const pieces = fragmentPacket(whole, 1280, id);

      it('reassembles in-order fragments into the datagram the sender had, byte for byte', () => {
        const { r, drops, feed } = setup();
        expect(pieces).toHaveLength(3);
        for (const piece of pieces) expect(parseOk(piece).isFragment).toBe(true);
        const result = feed(pieces)!;
        expect(result.equals(whole)).toBe(true);
        const view = parseOk(result);
        expect([view.isFragment, view.transport, view.dstPort, view.payloadLength]).toEqual([false, TransportKind.Udp, 7, 3000]);
        expect(verifyTransportChecksum(view)).toBe(true);
        expect([r.completed, r.pending, r.bytes, drops]).toEqual([1, 0, 0, []]);
      });

      it('reassembles out-of-order fragments (last first, first last)', () => {
        const { r, feed } = setup();
        expect(feed([pieces[2], pieces[0], pieces[1]])!.equals(whole)).toBe(true);
        expect(feed([pieces[1], pieces[2], pieces[0]])!.equals(whole)).toBe(true);
        expect(r.completed).toBe(2);
      });

      it('drops an exact duplicate alone and still completes', () => {
        const { r, drops, feed } = setup();
        expect(feed([pieces[0], pieces[1], pieces[1]])).toBeUndefined();
        expect(drops).toEqual(['fragment-duplicate']);
        expect(r.pending).toBe(1);
        expect(feed([pieces[2]])!.equals(whole)).toBe(true);
      });

      it('drops the whole datagram when fragments overlap (RFC 5722), then starts afresh', () => {
        const { r, drops, feed } = setup();
        const overlapping = buildFragment(whole, 1224, 2000, id);
        expect(feed([pieces[0], overlapping])).toBeUndefined();
        expect(drops).toEqual(['fragment-overlap']);
        expect([r.pending, r.bytes]).toEqual([0, 0]);
        // The rest arrives: it is a new datagram, which lacks its first fragment.
        expect(feed([pieces[1], pieces[2]])).toBeUndefined();
        expect(r.pending).toBe(1);
        // A fragment inside another (same start, shorter) overlaps too.
        const start = parseOk(pieces[1]).fragmentOffset;
        expect(feed([buildFragment(whole, start, start + 8, id)])).toBeUndefined();
        expect(drops).toEqual(['fragment-overlap', 'fragment-overlap']);
        expect(r.completed).toBe(0);
      });

      it('abandons a datagram whose fragment never comes at the timeout, answering only if the first arrived', () => {
        const { r, drops, timeouts, feed } = setup({ timeoutMs: 5000 });
        // In the future of the sweep timer's clock, so that only the sweeps called here expire anything.
        const t0 = Date.now() + 60_000;
        const { scope } = setup();
        feed([pieces[0], pieces[2]], scope(), t0);
        // Another datagram, later, of which only a middle fragment arrives.
        r.add(scope(), parseOk(buildFragment(whole, 1232, 2464, id + 1)), undefined, t0 + 2000);
        expect(r.pending).toBe(2);
        expect(r.sweep(t0 + 4999)).toBe(0);
        expect(r.sweep(t0 + 5000)).toBe(1);
        expect(drops).toEqual(['fragment-timeout']);
        expect(timeouts).toHaveLength(1);
        expect(timeouts[0].first.equals(pieces[0])).toBe(true);
        expect(timeouts[0].attachment).toBe('session-0');
        expect(r.sweep(t0 + 7000)).toBe(1); // no first fragment: dropped, nobody told
        expect(timeouts).toHaveLength(1);
        expect([r.pending, r.bytes]).toEqual([0, 0]);
        // What the edge sends back for it: time exceeded, code 1, quoting the first fragment.
        const icmp = parseOk(buildIcmpReassemblyTimeExceeded(timeouts[0].first)!);
        expect([icmp.icmpType, icmp.icmpCode]).toEqual(version === 4 ? [11, 1] : [3, 1]);
        expect(icmp.dst.equals(src)).toBe(true);
      });

      it('keeps two scopes apart when their fragments are identical but for the payload', () => {
        const { r, feed, scope } = setup();
        const other = version === 4 ? udp(src, dst, 3000, 99, id) : udp(src, dst, 3000, 99);
        const otherPieces = fragmentPacket(other, 1280, id);
        const tenantA = scope('a');
        const tenantB = scope('b');
        const vnetB2 = scope('b', 'second');
        expect(feed([pieces[0]], tenantA)).toBeUndefined();
        expect(feed([otherPieces[0], otherPieces[1]], tenantB)).toBeUndefined();
        expect(feed([pieces[0], pieces[1]], vnetB2)).toBeUndefined();
        expect(feed([pieces[1], pieces[2]], tenantA)!.equals(whole)).toBe(true);
        expect(feed([otherPieces[2]], tenantB)!.equals(other)).toBe(true);
        expect(feed([pieces[2]], vnetB2)!.equals(whole)).toBe(true);
        expect([r.completed, r.pending]).toEqual([3, 0]);
      });

      it('refuses fragments beyond the budget and a tenant beyond its share; completion gives the bytes back', () => {
        const charge = (piece: Buffer): number => piece.length + FRAGMENT_OVERHEAD_BYTES;
        // Room for one small last fragment on top of whole first fragments.
        const c = charge(pieces[0]);
        const { r, drops, feed, scope } = setup({ maxBytes: 4 * c + 1000, maxBytesPerTenant: 2 * c + 1000 });
        const original = (n: number): Buffer => (version === 4 ? udp(src, dst, 3000, n, n) : udp(src, dst, 3000, n));
        const datagram = (n: number): Buffer[] => fragmentPacket(original(n), 1280, n);
        // Tenant a: two first fragments fill its share; a third datagram is refused.
        feed([datagram(1)[0]], scope('a'));
        feed([datagram(2)[0]], scope('a'));
        expect(feed([datagram(3)[0]], scope('a'))).toBeUndefined();
        expect(drops).toEqual(['fragment-tenant-memory']);
        // Tenant b is not starved by a.
        feed([datagram(4)[0]], scope('b'));
        feed([datagram(5)[0]], scope('b', 'other-vnet'));
        expect(r.pending).toBe(4);
        // The edge's budget is full now: tenant c is refused too.
        expect(feed([datagram(6)[0]], scope('c'))).toBeUndefined();
        expect(drops).toEqual(['fragment-tenant-memory', 'fragment-memory']);
        // A refused fragment of a pending datagram drops the datagram (it cannot complete), freeing its share.
        expect(feed([datagram(1)[1]], scope('a'))).toBeUndefined();
        expect(drops.at(-1)).toBe('fragment-memory');
        expect(r.pending).toBe(3);
        // a's datagram 2 completes within a's share, and its bytes come back.
        expect(feed(datagram(2).slice(1), scope('a'))!.equals(original(2))).toBe(true);
        expect([r.pending, r.bytes, scope('a').tenantState.fragmentBytes, scope('b').tenantState.fragmentBytes]).toEqual([2, 2 * c, 0, 2 * c]);
        r.close();
        expect([r.bytes, scope('b').tenantState.fragmentBytes]).toEqual([0, 0]);
      });

      it('reassembles the fragments of a TCP segment (ports and checksum as sent)', () => {
        const { feed } = setup();
        const segment = buildTcp({
          src,
          dst,
          srcPort: 40001,
          dstPort: 80,
          seq: 1,
          ack: 2,
          flags: TcpFlag.ACK | TcpFlag.PSH,
          payload: payload(4000),
          identification: 77,
          dontFragment: false,
        });
        const result = feed(fragmentPacket(segment, 1280, 77).reverse())!;
        expect(result.equals(segment)).toBe(true);
        const view = parseOk(result);
        expect([view.transport, view.srcPort, view.dstPort, view.payloadLength]).toEqual([TransportKind.Tcp, 40001, 80, 4000]);
        expect(verifyTransportChecksum(view)).toBe(true);
      });

      it('refuses fragments past 65,535 bytes, of bad length, and an end that moves', () => {
        const { drops, feed } = setup();
        const big = version === 4 ? udp(src, dst, 65535 - 28) : udp(src, dst, 65535 - 8);
        // 8 bytes at the last offset a full-size datagram allows, moved 8 further: past 65,535.
        const lastStart = version === 4 ? 65504 : 65520;
        const past = buildFragment(big, lastStart, lastStart + 8, id, true);
        if (version === 4) past.writeUInt16BE(0x2000 | ((lastStart + 8) / 8), 6);
        else past.writeUInt16BE((lastStart + 8) | 1, 42);
        expect(feed([past])).toBeUndefined();
        expect(drops).toEqual(['fragment-too-big']);
        // Not a multiple of 8 while more fragments follow (RFC 8200 §4.5).
        expect(feed([buildFragment(whole, 0, 1001, id, true)])).toBeUndefined();
        expect(drops.at(-1)).toBe('fragment-bad-length');
        // Two "last" fragments that end at different places.
        expect(feed([pieces[2], buildFragment(whole, 8, 1232 * 2 + 8, id, false)])).toBeUndefined();
        expect(drops.at(-1)).toBe('fragment-inconsistent');
      });
    });
  }

  it('reassembles the kernel’s own fragments (Linux, IPv4 and IPv6) into a valid 3000-byte UDP datagram', () => {
    const capture = loadKernelPackets();
    const { feed } = setup();
    for (const version of [4, 6]) {
      const result = feed([2, 0, 1].map((i) => kernelPacket(capture, `udp${version}-fragment-${i}`)))!;
      const view = parseOk(result);
      expect([view.protocol, view.transport, view.payloadLength, view.isFragment]).toEqual([IpProtocol.UDP, TransportKind.Udp, 3000, false]);
      expect(verifyTransportChecksum(view)).toBe(true);
      if (version === 4) expect(verifyIpv4HeaderChecksum(view)).toBe(true);
    }
  });

  it('splits a datagram as Linux does: fragmentPacket of the reassembled kernel datagram gives the kernel’s fragments back', () => {
    const capture = loadKernelPackets();
    const { feed } = setup();
    for (const version of [4, 6]) {
      const kernel = [0, 1, 2].map((i) => kernelPacket(capture, `udp${version}-fragment-${i}`));
      const id = version === 4 ? kernel[0].readUInt16BE(4) : kernel[0].readUInt32BE(44);
      const ours = fragmentPacket(feed(kernel)!, 1500, id);
      expect(ours.map((p) => p.toString('hex'))).toEqual(kernel.map((p) => p.toString('hex')));
    }
  });

  it('refuses a reassembled IPv6 datagram that is a fragment again (nested fragment headers)', () => {
    const { r, drops, feed } = setup();
    const inner = buildFragment(udp(A6, B6, 2000), 8, 1608, 1); // starts with a fragment header of its own
    expect(feed(fragmentPacket(inner, 1280, 2))).toBeUndefined();
    expect(drops).toEqual(['fragment-nested']);
    expect([r.pending, r.completed]).toEqual([0, 0]);
  });

  it('keeps IPv4 options from the first fragment and IPv6 headers ahead of the fragment header', () => {
    const { feed } = setup();
    const recordRoute = Buffer.from([7, 7, 4, 0, 0, 0, 0, 1]); // not copied into later fragments
    const v4 = buildUdp({ src: A4, dst: B4, srcPort: 1, dstPort: 7, payload: payload(2000), ipv4Options: recordRoute, identification: 5, dontFragment: false });
    const v4Pieces = fragmentPacket(v4, 1000, 5);
    expect(parseOk(v4Pieces[1]).ipHeaderLength).toBe(20);
    expect(feed(v4Pieces)!.equals(v4)).toBe(true);

    const plain = udp(A6, B6, 2000);
    const hopByHop = Buffer.from([IpProtocol.UDP, 0, 1, 4, 0, 0, 0, 0]);
    const v6 = Buffer.concat([plain.subarray(0, 40), hopByHop, plain.subarray(40)]);
    v6.writeUInt16BE(v6.length - 40, 4);
    v6[6] = IpProtocol.HOP_BY_HOP;
    const v6Pieces = fragmentPacket(v6, 1000, 6);
    const first = parseOk(v6Pieces[0]);
    expect([first.isFragment, first.l4Offset, v6Pieces[0][48]]).toEqual([true, 56, IpProtocol.UDP]);
    const result = feed([...v6Pieces].reverse())!;
    expect(result.equals(v6)).toBe(true);
    expect(parseOk(result).dstPort).toBe(7);
  });

  it('leaves nothing behind at close', () => {
    const { r, feed } = setup();
    feed([fragmentPacket(udp(A4, B4, 3000), 1280, 9)[0]]);
    expect(r.pending).toBe(1);
    r.close();
    expect([r.pending, r.bytes]).toEqual([0, 0]);
  });
});
