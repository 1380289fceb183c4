import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { buildIcmpEcho, buildTcp, buildUdp, parsePacket, type PacketView } from '../../../src/engine/packet/index.js';

export interface KernelPacket {
  name: string;
  direction: 'kernel' | 'injected';
  note: string;
  bytes: Buffer;
}

export interface KernelCapture {
  kernel: string;
  packets: KernelPacket[];
}

export function parseCapture(json: string): KernelCapture {
  const raw = JSON.parse(json) as { kernel: string; packets: { name: string; direction: 'kernel' | 'injected'; note: string; hex: string }[] };
  return {
    kernel: raw.kernel,
    packets: raw.packets.map((p) => ({ name: p.name, direction: p.direction, note: p.note, bytes: Buffer.from(p.hex, 'hex') })),
  };
}

export const KERNEL_CAPTURE_SCRIPT = new URL('../../fixtures/packet/capture-kernel-packets.py', import.meta.url).pathname;

export function loadKernelPackets(): KernelCapture {
  return parseCapture(readFileSync(new URL('../../fixtures/packet/kernel-packets.json', import.meta.url), 'utf8'));
}

export function kernelPacket(capture: KernelCapture, name: string): Buffer {
  const found = capture.packets.find((p) => p.name === name);
  if (!found) throw new Error(`no fixture packet ${name}`);
  return Buffer.from(found.bytes); // a copy: tests may rewrite it
}

/** Parses and asserts success, for tests that feed known-good packets. */
export function parseOk(buf: Buffer): PacketView {
  const result = parsePacket(buf);
  if (!result.ok) throw new Error(`expected a valid packet, got malformed (${result.reason})`);
  return result;
}

// --- fast-check arbitraries for valid packets -----------------------------------------

// Synthetic bytes only (never sent): any address is fine, but stay in the test ranges anyway.
export const ipv4Address = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((a) => Buffer.from(a));
export const ipv6Address = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));
export const port = fc.integer({ min: 0, max: 0xffff });
const payload = fc.uint8Array({ maxLength: 300 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

const addressPair = fc.oneof(fc.tuple(ipv4Address, ipv4Address), fc.tuple(ipv6Address, ipv6Address));

const ipFields = fc.record({
  ttl: fc.integer({ min: 0, max: 255 }),
  tos: fc.integer({ min: 0, max: 255 }),
  identification: fc.integer({ min: 0, max: 0xffff }),
  flowLabel: fc.integer({ min: 0, max: 0xfffff }),
  dontFragment: fc.boolean(),
});

export const tcpPacket = fc
  .record({
    addresses: addressPair,
    ip: ipFields,
    srcPort: port,
    dstPort: port,
    seq: u32,
    ack: u32,
    flags: fc.integer({ min: 0, max: 255 }),
    window: port,
    options: fc.uint8Array({ maxLength: 40 }),
    payload,
  })
  .map((r) => buildTcp({ src: r.addresses[0], dst: r.addresses[1], ...r.ip, ...r }));

export const udpPacket = fc
  .record({ addresses: addressPair, ip: ipFields, srcPort: port, dstPort: port, payload, checksum: fc.boolean() })
  .map((r) => buildUdp({ src: r.addresses[0], dst: r.addresses[1], ...r.ip, ...r }));

export const icmpEchoPacket = fc
  .record({ addresses: addressPair, ip: ipFields, id: port, seq: port, reply: fc.boolean(), payload })
  .map((r) => buildIcmpEcho({ src: r.addresses[0], dst: r.addresses[1], ...r.ip, ...r }));

export const validPacket = fc.oneof(tcpPacket, udpPacket, icmpEchoPacket);
