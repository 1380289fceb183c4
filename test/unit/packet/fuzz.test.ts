// Fuzzing the parser: arbitrary bytes and mutated valid packets must never make it throw,
// read outside the buffer, or call a packet valid whose lengths do not add up. Everything
// a caller does next with a valid view (keys, checksums, rewrite, ICMP errors) is run too.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildIcmpUnreachable,
  computeTransportChecksum,
  describePacket,
  flowKey,
  parsePacket,
  quotedFlowKey,
  reverseFlowKey,
  rewriteDestination,
  rewriteSource,
  TransportKind,
  verifyIpv4HeaderChecksum,
  verifyTransportChecksum,
  type PacketView,
} from '../../../src/engine/packet/index.js';
import { loadKernelPackets, validPacket } from './helpers.js';

/**
 * Wraps a Buffer so every indexed access outside [0, length) is recorded. Methods run on
 * the real Buffer (they check their own bounds and throw, which the fuzz catches too).
 */
function boundsChecked(buf: Buffer): { proxy: Buffer; outOfBounds: string[] } {
  const outOfBounds: string[] = [];
  const check = (target: Buffer, key: string | symbol): void => {
    if (typeof key !== 'string') return;
    const index = Number(key);
    if (Number.isInteger(index) && String(index) === key && (index < 0 || index >= target.length)) outOfBounds.push(key);
  };
  const proxy = new Proxy(buf, {
    get(target, key) {
      check(target, key);
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
    set(target, key, value) {
      check(target, key);
      return Reflect.set(target, key, value, target);
    },
  });
  return { proxy, outOfBounds };
}

const NEW_V4 = Buffer.from([198, 19, 0, 1]);
const NEW_V6 = Buffer.from('20010db8ffff00000000000000000001', 'hex');

/** What must hold for every packet the parser accepts; also exercises every consumer. */
function checkValidView(view: PacketView, buf: Buffer): void {
  const length = buf.length;
  expect(view.length).toBeLessThanOrEqual(length);
  expect(view.l4Offset).toBeLessThanOrEqual(view.length);
  expect(view.l4End).toBeLessThanOrEqual(view.length);
  expect(view.payloadOffset).toBeLessThanOrEqual(view.l4End);
  expect(view.payload.length).toBe(view.payloadLength);
  if (view.version === 4) {
    expect(view.ipHeaderLength).toBeGreaterThanOrEqual(20);
    expect(view.l4Offset).toBe(view.ipHeaderLength);
    expect(view.length).toBe(buf.readUInt16BE(2));
  } else {
    expect(view.length).toBe(40 + buf.readUInt16BE(4));
    expect(view.l4Offset).toBeGreaterThanOrEqual(40);
  }
  expect(view.isFragment).toBe(view.moreFragments || view.fragmentOffset !== 0);
  switch (view.transport) {
    case TransportKind.Tcp:
      expect(view.l4HeaderLength).toBe((buf[view.l4Offset + 12] >> 4) * 4);
      expect(view.l4HeaderLength).toBeGreaterThanOrEqual(20);
      expect(view.l4End).toBe(view.length);
      break;
    case TransportKind.Udp:
      expect(view.l4End - view.l4Offset).toBe(view.udpLength);
      expect(view.udpLength).toBeGreaterThanOrEqual(8);
      break;
    case TransportKind.Icmp:
      expect(view.l4End - view.l4Offset).toBeGreaterThanOrEqual(8);
      break;
    default:
      expect(view.l4HeaderLength).toBe(0);
  }
  if (view.isFragment) expect(view.transport).toBe(TransportKind.None);

  // Consumers of a valid view must not throw either.
  expect(Number.isInteger(view.srcPort + view.dstPort + view.ttl + view.l4Checksum)).toBe(true);
  expect(flowKey(view).length).toBe(view.version === 4 ? 7 : 19);
  reverseFlowKey(view);
  quotedFlowKey(view);
  describePacket(view);
  computeTransportChecksum(view);
  const wasValid = verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view);
  const error = buildIcmpUnreachable(view, 'port');
  if (error) expect(parsePacket(error).ok).toBe(true);
  const rewritten = rewriteSource(view, view.version === 4 ? NEW_V4 : NEW_V6, 4242) || rewriteDestination(view, view.version === 4 ? NEW_V4 : NEW_V6);
  // A NAT rewrite keeps good checksums good (bad ones may stay bad: the receiver drops them).
  if (rewritten && wasValid && !(view.transport === TransportKind.Udp && view.version === 6 && view.l4Checksum === 0)) {
    expect(verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view)).toBe(true);
  }
}

function fuzzOne(bytes: Uint8Array): void {
  const { proxy, outOfBounds } = boundsChecked(Buffer.from(bytes));
  const result = parsePacket(proxy);
  if (result.ok) checkValidView(result, Buffer.from(proxy));
  expect(outOfBounds).toEqual([]);
}

// Arbitrary bytes, biased to start like IPv4/IPv6 headers so most get past the first check,
// and half the time with the IP length field made to match so the walk goes deeper.
const arbitraryPacket = fc
  .tuple(fc.constantFrom(0x45, 0x46, 0x4f, 0x40, 0x60, 0x6f, 0x00, 0xff), fc.uint8Array({ maxLength: 120 }), fc.boolean())
  .map(([first, rest, fixLength]) => {
    const bytes = Uint8Array.of(first, ...rest);
    if (fixLength && first >> 4 === 4 && bytes.length >= 4) {
      bytes[2] = bytes.length >> 8;
      bytes[3] = bytes.length & 0xff;
    } else if (fixLength && first >> 4 === 6 && bytes.length >= 40) {
      bytes[4] = (bytes.length - 40) >> 8;
      bytes[5] = (bytes.length - 40) & 0xff;
    }
    return bytes;
  });

// Valid packets to mutate: generated ones plus the kernel's (options, extension headers, fragments, ICMP errors).
const kernelPackets = loadKernelPackets().packets.map((p) => p.bytes);
const mutationSeed = fc.oneof({ arbitrary: validPacket, weight: 3 }, { arbitrary: fc.constantFrom(...kernelPackets), weight: 1 });

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), value: fc.constant(0) }),
  fc.record({ kind: fc.constant('extend' as const), at: fc.nat({ max: 64 }), value: fc.integer({ min: 0, max: 255 }) }),
  // Header-length fields: IPv4 IHL/total length, IPv6 payload length/next header, TCP data offset, UDP length.
  fc.record({ kind: fc.constant('field' as const), at: fc.constantFrom(0, 2, 3, 4, 5, 6, 9, 24, 25, 32, 44, 52, 60), value: fc.integer({ min: 0, max: 255 }) }),
);

function mutate(packet: Buffer, mutations: { kind: 'flip' | 'truncate' | 'extend' | 'field'; at: number; value: number }[]): Uint8Array {
  let bytes: Uint8Array = Uint8Array.from(packet);
  for (const m of mutations) {
    if (m.kind === 'truncate') bytes = bytes.subarray(0, bytes.length === 0 ? 0 : m.at % bytes.length);
    else if (m.kind === 'extend') bytes = Uint8Array.of(...bytes, ...new Array<number>(m.at).fill(m.value));
    else if (bytes.length > 0) bytes[m.kind === 'field' ? Math.min(m.at, bytes.length - 1) : m.at % bytes.length] = m.value;
  }
  return bytes;
}

describe('parser fuzzing', () => {
  it('has a bounds checker that sees out-of-range reads', () => {
    const { proxy, outOfBounds } = boundsChecked(Buffer.alloc(2));
    void proxy[1];
    void proxy[2];
    void proxy[-1];
    expect(outOfBounds).toEqual(['2', '-1']);
  });

  it('survives 60,000 arbitrary byte strings', () => {
    fc.assert(fc.property(arbitraryPacket, fuzzOne), { numRuns: 60_000 });
  });

  it('survives 60,000 mutated valid packets', () => {
    fc.assert(
      fc.property(mutationSeed, fc.array(mutation, { minLength: 1, maxLength: 4 }), (packet, mutations) => fuzzOne(mutate(packet, mutations))),
      { numRuns: 60_000 },
    );
  });

  it('accepts every unmutated valid packet (sanity check for the generators)', () => {
    fc.assert(
      fc.property(validPacket, (packet) => {
        const result = parsePacket(packet);
        expect(result.ok).toBe(true);
      }),
      { numRuns: 5_000 },
    );
  });
});
