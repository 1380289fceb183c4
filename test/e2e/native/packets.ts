// Hand-built IPv4 packets for the TUN tests, so they stand alone (no dependency
// on src/engine/packet). Addresses are from 198.18.0.0/15 only.

export function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

export function checksum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** IPv4 + UDP with both checksums. */
export function buildUdp4(src: string, srcPort: number, dst: string, dstPort: number, payload: Buffer): Buffer {
  const packet = Buffer.alloc(28 + payload.length);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet[8] = 64; // TTL
  packet[9] = 17; // UDP
  packet.set(ipv4Bytes(src), 12);
  packet.set(ipv4Bytes(dst), 16);
  packet.writeUInt16BE(checksum(packet.subarray(0, 20)), 10);
  packet.writeUInt16BE(srcPort, 20);
  packet.writeUInt16BE(dstPort, 22);
  packet.writeUInt16BE(8 + payload.length, 24);
  payload.copy(packet, 28);
  packet.writeUInt16BE(checksum(packet.subarray(20), pseudoHeaderSum(packet, 17, 8 + payload.length)) || 0xffff, 26);
  return packet;
}

export interface Udp4 {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

export function parseUdp4(packet: Buffer): Udp4 | undefined {
  if (packet.length < 28 || packet[0]! >> 4 !== 4 || packet[9] !== 17) return undefined;
  const ihl = (packet[0]! & 0x0f) * 4;
  return {
    src: [...packet.subarray(12, 16)].join('.'),
    dst: [...packet.subarray(16, 20)].join('.'),
    srcPort: packet.readUInt16BE(ihl),
    dstPort: packet.readUInt16BE(ihl + 2),
    payload: packet.subarray(ihl + 8, packet.readUInt16BE(2)),
  };
}

/** Sum of the IPv4 pseudo header (src, dst, protocol, length) for a transport checksum. */
function pseudoHeaderSum(packet: Buffer, protocol: number, length: number): number {
  let sum = protocol + length;
  for (let i = 12; i < 20; i += 2) sum += packet.readUInt16BE(i);
  return sum;
}

export interface Tcp4 {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  payloadLength: number;
}

export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;

export function parseTcp4(packet: Buffer): Tcp4 | undefined {
  if (packet.length < 40 || packet[0]! >> 4 !== 4 || packet[9] !== 6) return undefined;
  const ihl = (packet[0]! & 0x0f) * 4;
  const dataOffset = (packet[ihl + 12]! >> 4) * 4;
  return {
    src: [...packet.subarray(12, 16)].join('.'),
    dst: [...packet.subarray(16, 20)].join('.'),
    srcPort: packet.readUInt16BE(ihl),
    dstPort: packet.readUInt16BE(ihl + 2),
    seq: packet.readUInt32BE(ihl + 4),
    ack: packet.readUInt32BE(ihl + 8),
    flags: packet[ihl + 13]!,
    payloadLength: packet.readUInt16BE(2) - ihl - dataOffset,
  };
}

/** IPv4 + TCP (no payload) with both checksums; `mss` adds the MSS option. */
export function buildTcp4(
  src: string,
  srcPort: number,
  dst: string,
  dstPort: number,
  fields: { seq: number; ack: number; flags: number; window?: number; mss?: number },
): Buffer {
  const options = fields.mss === undefined ? Buffer.alloc(0) : Buffer.from([2, 4, fields.mss >> 8, fields.mss & 0xff]);
  const tcpLength = 20 + options.length;
  const packet = Buffer.alloc(20 + tcpLength);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet[8] = 64;
  packet[9] = 6;
  packet.set(ipv4Bytes(src), 12);
  packet.set(ipv4Bytes(dst), 16);
  packet.writeUInt16BE(checksum(packet.subarray(0, 20)), 10);
  packet.writeUInt16BE(srcPort, 20);
  packet.writeUInt16BE(dstPort, 22);
  packet.writeUInt32BE(fields.seq >>> 0, 24);
  packet.writeUInt32BE(fields.ack >>> 0, 28);
  packet[32] = (tcpLength / 4) << 4;
  packet[33] = fields.flags;
  packet.writeUInt16BE(fields.window ?? 65535, 34);
  options.copy(packet, 40);
  packet.writeUInt16BE(checksum(packet.subarray(20), pseudoHeaderSum(packet, 6, tcpLength)), 36);
  return packet;
}
