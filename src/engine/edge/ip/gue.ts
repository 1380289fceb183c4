/**
 * Unconnected IP tunnels: GUE (Generic UDP Encapsulation, draft-ietf-intarea-gue) on a
 * UDP port. Every datagram is one encapsulated IP packet with its context, authenticated.
 *
 * GUE variant 0 header (4 bytes), then Hlen × 4 bytes of extension fields:
 *
 *    0                   1                   2                   3
 *   |0 0|C|  Hlen   |  Proto/ctype  |             Flags             |
 *   |                 Private data (Hlen × 4 bytes)                 |
 *
 * C = 0 (data), Proto = 4 (IPv4) or 41 (IPv6), Flags = 0: with no flag fields, the
 * whole extension area is GUE "private data" (draft §3.3.3), which carries our context.
 * Offsets below are from the start of the datagram:
 *
 *   4        0x4f ('O')      marks the oxyctl context format
 *   5        0x02            format version (1 was unauthenticated and is refused)
 *   6        T               tenant length (0: the tenant of the key)
 *   7        V               vnet length (0: the default vnet)
 *   8..23    key ID          the enrolled device's ID (`warp enroll`), 16 bytes of its UUID
 *   24..27   seconds         the sender's Unix time (u32, never decreasing)
 *   28..31   sequence        per datagram within that second (u32, from 0)
 *   32..47   MAC             HMAC-SHA256 truncated to 16 bytes over the whole datagram
 *                            without these 16 bytes (header, context and inner packet)
 *   48..     tenant (T bytes), vnet (V bytes), zero padding to 4n
 *
 * so tenant + vnet fit in 80 bytes (Hlen ≤ 31). The MAC key is derived from the device
 * secret, one per direction ({@link deriveGueKeys}), so an edge reply reflected back at the
 * edge does not verify. The edge refuses a datagram whose seconds are more than
 * {@link GUE_MAX_SKEW_S} from its own clock (this bounds replays across an edge restart)
 * and one whose (seconds, sequence) it has already seen for the key (a 1024-datagram window
 * per second, for this second and the one before, so reordering is tolerated).
 * Replies go back to the sender's address and port with the same context, the edge's own
 * counter and a MAC under the edge→device key.
 *
 * Every datagram that is not such GUE (variant 1, control, flags, v1, unknown key, bad MAC,
 * replayed, stale, a tenant or vnet the key does not allow) is counted by reason and dropped.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import dgram from 'node:dgram';

import type { IpEdge, IpSession } from './edge.js';

/** GUE Proto values for the inner packet (IP protocol numbers of IP-in-IP). */
const PROTO_IPV4 = 4;
const PROTO_IPV6 = 41;

export const GUE_CONTEXT_MAGIC = 0x4f;
/** The authenticated context format; version 1 (no authentication) is refused. */
export const GUE_CONTEXT_VERSION = 2;
/** How far (seconds) a datagram's clock may be from the edge's. */
export const GUE_MAX_SKEW_S = 120;

const OFF_KEY_ID = 8;
const OFF_SECONDS = 24;
const OFF_SEQUENCE = 28;
const OFF_MAC = 32;
const MAC_BYTES = 16;
const OFF_NAMES = 48;
const MAX_HEADER = 4 + 31 * 4;
const REPLAY_WINDOW = 1024;

export type GueDropReason = 'malformed' | 'bad-context' | 'unauthenticated' | 'unknown-key' | 'bad-mac' | 'stale' | 'replayed' | 'wrong-tenant' | 'wrong-vnet';

/** The two MAC keys of one device: device → edge, edge → device. */
export interface GueKeys {
  up: Buffer;
  down: Buffer;
}

/** What a key ID may do. */
export interface GueCredential {
  keys: GueKeys;
  /** The only tenant its datagrams may name. */
  tenant: string;
  /**
   * The vnet its datagrams name (ID or name; '' = default), resolved: sessions carry its ID
   * and name; undefined refuses them ('wrong-vnet'). Default: any, taken as named.
   */
  vnet?(ref: string): { id: string; name: string } | undefined;
}

/** Derives a device's GUE keys from its enrolment secret (the token's `s`, base64-decoded). */
export function deriveGueKeys(secret: Buffer): GueKeys {
  const derive = (label: string) => createHmac('sha256', secret).update(label).digest();
  return { up: derive('oxyctl gue v2 device to edge'), down: derive('oxyctl gue v2 edge to device') };
}

export interface GueOnRampOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The credential of a key ID (a device UUID, lower case); undefined if unknown or revoked. */
  credentials: (keyId: string) => GueCredential | undefined;
  /** Called for every dropped datagram (metrics, logs). */
  onDrop?: (reason: GueDropReason, from: string) => void;
  /** Sessions (distinct sender + context) kept; the oldest is closed beyond this. Default 65536. */
  maxSessions?: number;
  /**
   * A session that sent nothing for this long is closed (its flows end 'session-closed').
   * Default: the edge's TCP idle timeout, so a live TCP flow (which sends ACKs) keeps it.
   */
  idleMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface GueStats {
  datagrams: number;
  /** Dropped datagrams by reason. */
  dropped: Record<GueDropReason, number>;
  sessions: number;
  /** Sessions closed because they were idle. */
  idleClosed: number;
}

const uuidOf = (b: Buffer, at: number): string => {
  const h = b.toString('hex', at, at + 16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};

const macOf = (key: Buffer, header: Buffer, rest: Buffer): Buffer =>
  createHmac('sha256', key)
    .update(header.subarray(0, OFF_MAC))
    .update(header.subarray(OFF_MAC + MAC_BYTES))
    .update(rest)
    .digest()
    .subarray(0, MAC_BYTES);

/** The (seconds, sequence) counter of one sending direction: never repeats, never decreases. */
class GueCounter {
  private seconds = 0;
  private sequence = 0;
  constructor(private readonly now: () => number) {}

  /** Writes the next counter value into a header. */
  stamp(header: Buffer): void {
    const s = Math.floor(this.now() / 1000);
    if (s > this.seconds) {
      this.seconds = s;
      this.sequence = 0;
    } else if (this.sequence === 0xffffffff) {
      this.seconds++;
      this.sequence = 0;
    } else {
      this.sequence++;
    }
    header.writeUInt32BE(this.seconds >>> 0, OFF_SECONDS);
    header.writeUInt32BE(this.sequence, OFF_SEQUENCE);
  }
}

/** One second's sliding window of seen sequence numbers (RFC 6479 style bitmap). */
class SequenceWindow {
  private top = -1;
  private readonly bits = new Uint32Array(REPLAY_WINDOW / 32);
  constructor(readonly seconds: number) {}

  /** True the first time a sequence number is seen inside the window; records it. */
  accept(sequence: number): boolean {
    if (sequence > this.top) {
      if (sequence - this.top >= REPLAY_WINDOW) this.bits.fill(0);
      else for (let s = this.top + 1; s <= sequence; s++) this.bits[(s % REPLAY_WINDOW) >>> 5]! &= ~(1 << (s & 31));
      this.top = sequence;
    } else if (this.top - sequence >= REPLAY_WINDOW) {
      return false;
    }
    const word = (sequence % REPLAY_WINDOW) >>> 5;
    const bit = 1 << (sequence & 31);
    if (this.bits[word]! & bit) return false;
    this.bits[word]! |= bit;
    return true;
  }
}

/** Replay protection of one key: windows for the newest second and the one before. */
class ReplayGuard {
  private current?: SequenceWindow;
  private previous?: SequenceWindow;

  accept(seconds: number, sequence: number): boolean {
    if (!this.current || seconds > this.current.seconds) {
      this.previous = this.current;
      this.current = new SequenceWindow(seconds);
    }
    if (seconds === this.current.seconds) return this.current.accept(sequence);
    if (seconds === this.previous?.seconds) return this.previous.accept(sequence);
    return false;
  }
}

/**
 * A GUE sender's side (devices, sites, tests): encapsulates packets for the edge and opens
 * the edge's replies. One per device key and sender: the edge refuses a counter it has seen.
 */
export class GueClient {
  private readonly keyId: Buffer;
  private readonly keys: GueKeys;
  private readonly counter: GueCounter;
  private readonly replies = new ReplayGuard();

  constructor(o: { deviceId: string; secret: Buffer | string; now?: () => number }) {
    this.keyId = Buffer.from(o.deviceId.replace(/-/g, ''), 'hex');
    if (this.keyId.length !== 16) throw new RangeError('GUE: the key ID is the device UUID');
    this.keys = deriveGueKeys(typeof o.secret === 'string' ? Buffer.from(o.secret, 'base64') : o.secret);
    this.counter = new GueCounter(o.now ?? Date.now);
  }

  /** A whole GUE datagram carrying one IP packet; tenant '' means the key's own. */
  encapsulate(packet: Buffer, context: { tenant?: string; vnet?: string } = {}): Buffer {
    const header = encodeGueHeader(context.tenant ?? '', context.vnet ?? '', packet[0]! >> 4 === 6 ? 6 : 4);
    this.keyId.copy(header, OFF_KEY_ID);
    this.counter.stamp(header);
    macOf(this.keys.up, header, packet).copy(header, OFF_MAC);
    return Buffer.concat([header, packet]);
  }

  /** The IP packet of an authentic, fresh reply from the edge; undefined otherwise. */
  decapsulate(datagram: Buffer): Buffer | undefined {
    const headerLength = checkHeader(datagram);
    if (headerLength < 0 || datagram[5] !== GUE_CONTEXT_VERSION || !this.keyId.equals(datagram.subarray(OFF_KEY_ID, OFF_KEY_ID + 16))) return undefined;
    const header = datagram.subarray(0, headerLength);
    const packet = datagram.subarray(headerLength);
    if (!timingSafeEqual(macOf(this.keys.down, header, packet), datagram.subarray(OFF_MAC, OFF_MAC + MAC_BYTES))) return undefined;
    if (!this.replies.accept(datagram.readUInt32BE(OFF_SECONDS), datagram.readUInt32BE(OFF_SEQUENCE))) return undefined;
    return packet;
  }
}

/**
 * The GUE header with a v2 context (tenant, vnet), its key ID, counter and MAC left zero:
 * {@link GueClient.encapsulate} fills them.
 */
export function encodeGueHeader(tenant: string, vnet: string, innerVersion: 4 | 6): Buffer {
  const t = Buffer.from(tenant, 'utf8');
  const v = Buffer.from(vnet, 'utf8');
  const privateLength = Math.ceil((OFF_NAMES - 4 + t.length + v.length) / 4) * 4;
  if (t.length > 255 || v.length > 255 || 4 + privateLength > MAX_HEADER) {
    throw new RangeError('GUE context: tenant + vnet must be at most 80 bytes (use the vnet ID, and tenant "" for the key\'s own)');
  }
  const header = Buffer.alloc(4 + privateLength);
  header[0] = privateLength / 4; // variant 0, C = 0, Hlen
  header[1] = innerVersion === 4 ? PROTO_IPV4 : PROTO_IPV6;
  header[4] = GUE_CONTEXT_MAGIC;
  header[5] = GUE_CONTEXT_VERSION;
  header[6] = t.length;
  header[7] = v.length;
  t.copy(header, OFF_NAMES);
  v.copy(header, OFF_NAMES + t.length);
  return header;
}

/**
 * The header length of a GUE variant 0 data datagram with an IP payload and no flags,
 * with a payload after it; -1 if not such a datagram.
 */
function checkHeader(d: Buffer): number {
  if (d.length < 4) return -1;
  const proto = d[1];
  if ((d[0]! & 0xe0) !== 0 || d[2] !== 0 || d[3] !== 0 || (proto !== PROTO_IPV4 && proto !== PROTO_IPV6)) return -1;
  const headerLength = 4 + (d[0]! & 0x1f) * 4;
  return d.length > headerLength ? headerLength : -1;
}

interface GueSession {
  session: IpSession;
  keyId: string;
  vnet: string;
  /** The on-ramp's coarse clock when the sender last sent something. */
  lastSeen: number;
}

export class GueOnRamp {
  readonly stats: GueStats = {
    datagrams: 0,
    dropped: { malformed: 0, 'bad-context': 0, unauthenticated: 0, 'unknown-key': 0, 'bad-mac': 0, stale: 0, replayed: 0, 'wrong-tenant': 0, 'wrong-vnet': 0 },
    sessions: 0,
    idleClosed: 0,
  };
  private readonly sessions = new Map<string, GueSession>();
  /** Per key ID: the replay guard of its datagrams, the counter of the edge's replies. */
  private readonly keyState = new Map<string, { guard: ReplayGuard; counter: GueCounter }>();
  private readonly maxSessions: number;
  private readonly idleMs: number;
  private readonly clockMs: () => number;
  /** A coarse clock (set by the sweep timer): no Date.now() per datagram. */
  private now: number;
  private readonly sweeper: NodeJS.Timeout;

  private constructor(
    private readonly edge: IpEdge,
    private readonly socket: dgram.Socket,
    private readonly options: GueOnRampOptions,
  ) {
    this.maxSessions = options.maxSessions ?? 65536;
    this.idleMs = options.idleMs ?? edge.table.tcpIdleMs;
    this.clockMs = options.now ?? Date.now;
    this.now = this.clockMs();
    socket.on('message', (datagram, rinfo) => this.datagram(datagram, rinfo));
    socket.on('error', () => {});
    this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.min(this.idleMs / 4, 1000)));
    this.sweeper.unref();
  }

  /** Closes the sessions idle for longer than idleMs. */
  private sweep(): void {
    this.now = this.clockMs();
    for (const [name, entry] of this.sessions) {
      if (this.now - entry.lastSeen <= this.idleMs) continue;
      this.closeSession(name, entry);
      this.stats.idleClosed++;
    }
  }

  private closeSession(name: string, entry: GueSession): void {
    this.sessions.delete(name);
    entry.session.close();
    this.stats.sessions = this.sessions.size;
  }

  /**
   * Re-checks every session against the credentials (after a store change): the sessions
   * of a revoked key, or of a vnet it may no longer use, are closed at once.
   */
  recheck(): void {
    for (const [name, entry] of this.sessions) {
      const credential = this.options.credentials(entry.keyId);
      if (!credential || (credential.vnet && !credential.vnet(entry.vnet))) this.closeSession(name, entry);
    }
    for (const keyId of this.keyState.keys()) if (!this.options.credentials(keyId)) this.keyState.delete(keyId);
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

  private drop(reason: GueDropReason, rinfo: dgram.RemoteInfo): void {
    this.stats.dropped[reason]++;
    this.options.onDrop?.(reason, `${rinfo.address}:${rinfo.port}`);
  }

  private datagram(datagram: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.datagrams++;
    const headerLength = checkHeader(datagram);
    if (headerLength < 0) return this.drop('malformed', rinfo);
    if (headerLength < 8 || datagram[4] !== GUE_CONTEXT_MAGIC) return this.drop('bad-context', rinfo);
    if (datagram[5] === 1) return this.drop('unauthenticated', rinfo);
    const t = datagram[6]!;
    const v = datagram[7]!;
    if (datagram[5] !== GUE_CONTEXT_VERSION || OFF_NAMES + t + v > headerLength) return this.drop('bad-context', rinfo);
    const keyId = uuidOf(datagram, OFF_KEY_ID);
    const credential = this.options.credentials(keyId);
    if (!credential) return this.drop('unknown-key', rinfo);
    const seconds = datagram.readUInt32BE(OFF_SECONDS);
    if (Math.abs(seconds - this.now / 1000) > GUE_MAX_SKEW_S) return this.drop('stale', rinfo);
    const header = datagram.subarray(0, headerLength);
    const packet = datagram.subarray(headerLength);
    if (!timingSafeEqual(macOf(credential.keys.up, header, packet), datagram.subarray(OFF_MAC, OFF_MAC + MAC_BYTES))) return this.drop('bad-mac', rinfo);
    // Authentic from here: the context is the key holder's own claim, checked against its rights.
    const name = `${rinfo.address}|${rinfo.port}|${keyId}|${t}|${datagram.toString('latin1', OFF_NAMES, OFF_NAMES + t + v)}`;
    let entry = this.sessions.get(name);
    if (!entry) {
      const tenant = t === 0 ? credential.tenant : datagram.toString('utf8', OFF_NAMES, OFF_NAMES + t);
      const named = datagram.toString('utf8', OFF_NAMES + t, OFF_NAMES + t + v);
      if (tenant !== credential.tenant) return this.drop('wrong-tenant', rinfo);
      const vnet = credential.vnet ? credential.vnet(named) : { id: named, name: named };
      if (!vnet) return this.drop('wrong-vnet', rinfo);
      if (!this.state(keyId).guard.accept(seconds, datagram.readUInt32BE(OFF_SEQUENCE))) return this.drop('replayed', rinfo);
      entry = this.open(name, keyId, { tenant, vnet: vnet.id, vnetName: vnet.name }, header, rinfo);
    } else if (!this.state(keyId).guard.accept(seconds, datagram.readUInt32BE(OFF_SEQUENCE))) {
      return this.drop('replayed', rinfo);
    }
    entry.lastSeen = this.now;
    entry.session.receive(packet);
  }

  private state(keyId: string): { guard: ReplayGuard; counter: GueCounter } {
    let state = this.keyState.get(keyId);
    if (!state) this.keyState.set(keyId, (state = { guard: new ReplayGuard(), counter: new GueCounter(this.clockMs) }));
    return state;
  }

  private open(name: string, keyId: string, context: { tenant: string; vnet: string; vnetName: string }, header: Buffer, rinfo: dgram.RemoteInfo): GueSession {
    if (this.sessions.size >= this.maxSessions) {
      const [oldestName, oldest] = this.sessions.entries().next().value as [string, GueSession];
      this.closeSession(oldestName, oldest);
    }
    const socket = this.socket;
    const template = Buffer.from(header);
    const counter = this.state(keyId).counter;
    const session = this.edge.openSession({ ...context, peer: `${rinfo.address}:${rinfo.port}`, device: keyId }, (packet) => {
      // A header per packet: dgram keeps the buffers until the send completes.
      const credential = this.options.credentials(keyId);
      if (!credential) return;
      const out = Buffer.from(template);
      out[1] = packet[0]! >> 4 === 6 ? PROTO_IPV6 : PROTO_IPV4;
      counter.stamp(out);
      macOf(credential.keys.down, out, packet).copy(out, OFF_MAC);
      socket.send([out, packet], rinfo.port, rinfo.address);
    });
    const entry = { session, keyId, vnet: context.vnet, lastSeen: this.now };
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
