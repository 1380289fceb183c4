/**
 * Unconnected IP tunnels: GUE (Generic UDP Encapsulation, draft-ietf-intarea-gue) on a
 * UDP port. Every datagram is one encapsulated IP packet with its context.
 *
 * GUE variant 0 header (4 bytes), then Hlen × 4 bytes of extension fields:
 *
 *    0                   1                   2                   3
 *   |0 0|C|  Hlen   |  Proto/ctype  |             Flags             |
 *   |                 Private data (Hlen × 4 bytes)                 |
 *
 * C = 0 (data), Proto = 4 (IPv4) or 41 (IPv6), Flags = 0: with no flag fields, the
 * whole extension area is GUE "private data" (draft §3.3.3), which carries our context:
 *
 *   byte 0   0x4f ('O')      marks the oxyctl context format
 *   byte 1   0x01            format version
 *   byte 2   T               tenant length (bytes, 1..)
 *   byte 3   V               vnet length (bytes, may be 0: the default vnet)
 *   4..      tenant (UTF-8, T bytes), vnet (UTF-8, V bytes), zero padding to 4n
 *
 * so tenant + vnet fit in 120 bytes (Hlen ≤ 31). Replies go back to the sender's
 * address and port with the same header (Proto set to the reply's version).
 * Datagrams that are not such GUE (variant 1, control, flags, bad context) are
 * counted and dropped.
 */
import dgram from 'node:dgram';

import type { IpEdge, IpSession } from './edge.js';

/** GUE Proto values for the inner packet (IP protocol numbers of IP-in-IP). */
const PROTO_IPV4 = 4;
const PROTO_IPV6 = 41;

export const GUE_CONTEXT_MAGIC = 0x4f;
export const GUE_CONTEXT_VERSION = 1;

export interface GueOnRampOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Sessions (distinct sender + context) kept; the oldest is closed beyond this. Default 65536. */
  maxSessions?: number;
  /**
   * A session that sent nothing for this long is closed (its flows end 'session-closed').
   * Default: the edge's TCP idle timeout, so a live TCP flow (which sends ACKs) keeps it.
   */
  idleMs?: number;
}

export interface GueStats {
  datagrams: number;
  malformed: number;
  badContext: number;
  sessions: number;
  /** Sessions closed because they were idle. */
  idleClosed: number;
}

/** Encodes the GUE header with the context in private data (for clients and tests). */
export function encodeGueHeader(tenant: string, vnet: string, innerVersion: 4 | 6): Buffer {
  const t = Buffer.from(tenant, 'utf8');
  const v = Buffer.from(vnet, 'utf8');
  const privateLength = Math.ceil((4 + t.length + v.length) / 4) * 4;
  if (t.length === 0 || t.length > 255 || v.length > 255 || privateLength > 31 * 4) {
    throw new RangeError('GUE context: tenant must be 1 byte or more and tenant + vnet at most 120 bytes');
  }
  const header = Buffer.alloc(4 + privateLength);
  header[0] = privateLength / 4; // variant 0, C = 0, Hlen
  header[1] = innerVersion === 4 ? PROTO_IPV4 : PROTO_IPV6;
  header[4] = GUE_CONTEXT_MAGIC;
  header[5] = GUE_CONTEXT_VERSION;
  header[6] = t.length;
  header[7] = v.length;
  t.copy(header, 8);
  v.copy(header, 8 + t.length);
  return header;
}

/** Tenant and vnet from a GUE header's private data; undefined if not our format. */
export function decodeGueContext(datagram: Buffer, headerLength: number): { tenant: string; vnet: string } | undefined {
  if (headerLength < 8 || datagram[4] !== GUE_CONTEXT_MAGIC || datagram[5] !== GUE_CONTEXT_VERSION) return undefined;
  const t = datagram[6]!;
  const v = datagram[7]!;
  if (t === 0 || 8 + t + v > headerLength) return undefined;
  return { tenant: datagram.toString('utf8', 8, 8 + t), vnet: datagram.toString('utf8', 8 + t, 8 + t + v) };
}

interface GueSession {
  session: IpSession;
  /** The on-ramp's coarse clock when the sender last sent something. */
  lastSeen: number;
}

export class GueOnRamp {
  readonly stats: GueStats = { datagrams: 0, malformed: 0, badContext: 0, sessions: 0, idleClosed: 0 };
  private readonly sessions = new Map<string, GueSession>();
  private readonly maxSessions: number;
  private readonly idleMs: number;
  /** A coarse clock (set by the sweep timer): no Date.now() per datagram. */
  private now = Date.now();
  private readonly sweeper: NodeJS.Timeout;

  private constructor(
    private readonly edge: IpEdge,
    private readonly socket: dgram.Socket,
    options: GueOnRampOptions,
  ) {
    this.maxSessions = options.maxSessions ?? 65536;
    this.idleMs = options.idleMs ?? edge.table.tcpIdleMs;
    socket.on('message', (datagram, rinfo) => this.datagram(datagram, rinfo));
    socket.on('error', () => {});
    this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.min(this.idleMs / 4, 1000)));
    this.sweeper.unref();
  }

  /** Closes the sessions idle for longer than idleMs. */
  private sweep(): void {
    this.now = Date.now();
    for (const [name, entry] of this.sessions) {
      if (this.now - entry.lastSeen <= this.idleMs) continue;
      this.sessions.delete(name);
      entry.session.close();
      this.stats.idleClosed++;
    }
    this.stats.sessions = this.sessions.size;
  }

  static async listen(edge: IpEdge, options: GueOnRampOptions): Promise<GueOnRamp> {
    const host = options.host ?? '127.0.0.1';
    const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(options.port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new GueOnRamp(edge, socket, options);
  }

  get port(): number {
    return this.socket.address().port;
  }

  private datagram(datagram: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.datagrams++;
    if (datagram.length < 4) return void this.stats.malformed++;
    const first = datagram[0]!;
    const proto = datagram[1]!;
    // Variant 0, data message, no flags, an IP payload.
    if ((first & 0xe0) !== 0 || datagram[2] !== 0 || datagram[3] !== 0 || (proto !== PROTO_IPV4 && proto !== PROTO_IPV6)) {
      return void this.stats.malformed++;
    }
    const headerLength = 4 + (first & 0x1f) * 4;
    if (datagram.length <= headerLength) return void this.stats.malformed++;
    const name = `${rinfo.address}|${rinfo.port}|${datagram.toString('latin1', 4, headerLength)}`;
    let entry = this.sessions.get(name);
    if (!entry) {
      const context = decodeGueContext(datagram, headerLength);
      if (!context) return void this.stats.badContext++;
      entry = this.open(name, context, Buffer.from(datagram.subarray(0, headerLength)), rinfo);
    }
    entry.lastSeen = this.now;
    entry.session.receive(datagram.subarray(headerLength));
  }

  private open(name: string, context: { tenant: string; vnet: string }, header: Buffer, rinfo: dgram.RemoteInfo): GueSession {
    if (this.sessions.size >= this.maxSessions) {
      const [oldestName, oldest] = this.sessions.entries().next().value as [string, GueSession];
      this.sessions.delete(oldestName);
      oldest.session.close();
    }
    const socket = this.socket;
    // One header per inner version: dgram keeps the buffers until the send completes.
    const header4 = Buffer.from(header);
    header4[1] = PROTO_IPV4;
    const header6 = Buffer.from(header);
    header6[1] = PROTO_IPV6;
    const session = this.edge.openSession({ ...context, peer: `${rinfo.address}:${rinfo.port}` }, (packet) => {
      socket.send([packet[0]! >> 4 === 6 ? header6 : header4, packet], rinfo.port, rinfo.address);
    });
    const entry = { session, lastSeen: this.now };
    this.sessions.set(name, entry);
    this.stats.sessions = this.sessions.size;
    return entry;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const entry of this.sessions.values()) entry.session.close();
    this.sessions.clear();
    this.socket.close();
  }
}
