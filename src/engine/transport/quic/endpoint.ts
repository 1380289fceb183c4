/**
 * The UDP side of the QUIC driver: one pktinfo socket, the connections on it, and the
 * event-loop rhythm that makes quiche fast from JavaScript.
 *
 *  - Receive: the native socket hands over every datagram of a wake-up at once (recvmmsg).
 *    Each is routed by destination connection ID (ours are always CID_LENGTH bytes, so a
 *    short-header packet routes by a fixed slice, a long header by its DCID field) and fed
 *    to quiche with `to` = the local address it arrived on (IP_PKTINFO).
 *  - Then, once for the whole batch, every connection that got packets or application work
 *    is serviced and all their packets leave in one sendmmsg batch, each from the address
 *    quiche's SendInfo.from names — the address the client dialed, even when the listener
 *    is bound to the wildcard on a multi-homed host. One flush per turn lets quiche coalesce
 *    ACKs and frames instead of answering packet by packet.
 *  - New connections (server): Initial packets only, at least 1200 bytes; version
 *    negotiation; stateless retry (./retry.ts) before any state is allocated. Short-header
 *    packets for unknown connections get a stateless reset (./stateless-reset.ts).
 *  - Application work (writes, opens, datagrams, closes) schedules a flush with
 *    setImmediate, so everything queued in one turn goes out together.
 */
import { randomBytes } from 'node:crypto';
import { debuglog } from 'node:util';
import type { OutgoingDatagram, PktinfoUdpSocket, UdpBatch } from '../../native/index.js';
import { CID_LENGTH, quiche, type QuicheConfig, type QuicheHost } from './config.js';
import { QuicTunnelConnection, type QuicEndpointHooks } from './connection.js';
import { RetryTokens } from './retry.js';
import type { StatelessResets } from './stateless-reset.js';

const debug = debuglog('oxy:transport:quic');

/** Packets per sendmmsg batch handed to the socket. */
const SEND_CHUNK = 512;
/** Packet buffers are cut from slabs of this many bytes. */
const SLAB_SIZE = 256 * 1024;

export interface ServerSide {
  config: QuicheConfig;
  retry: RetryTokens | undefined;
  /** Answers packets for connections this process does not know (after a restart). */
  resets?: StatelessResets;
  keepAliveMs: number;
  onConnection: (conn: QuicTunnelConnection) => void;
  maxConnections: number;
}

export class QuicEndpoint implements QuicEndpointHooks {
  readonly socket: PktinfoUdpSocket;
  readonly localAddress: string;
  readonly localPort: number;
  private readonly ownsSocket: boolean;
  private readonly byCid = new Map<string, QuicTunnelConnection>();
  private readonly cidsOf = new Map<QuicTunnelConnection, string[]>();
  /**
   * Connections to service at the next flush, each once (`conn.queued`). An array, not a Set:
   * a Set emptied and refilled every turn shrinks and regrows its table each time (a fresh
   * allocation and page faults per turn in the profile).
   */
  private readonly dirtyList: (QuicTunnelConnection | undefined)[] = [];
  private dirtyCount = 0;
  private flushScheduled: NodeJS.Immediate | undefined;
  private flushing = false;
  private slab: Buffer = Buffer.allocUnsafe(0);
  private slabOffset = 0;
  private server: ServerSide | undefined;
  private client: { conn: QuicTunnelConnection; host: string; port: number } | undefined;
  private closing = false;
  private closedResolve: (() => void) | undefined;
  readonly closedPromise: Promise<void>;
  /** Packets the socket refused (unreachable, EPERM): the auto fallback's "UDP blocked" hint. */
  sendErrors = 0;
  lastSendError: Error | undefined;
  /** Client: datagrams dropped because they came from another address or port than the one dialed. */
  strayPackets = 0;

  /** Coalesce runs of same-size packets to one destination into UDP GSO sends. */
  private gso: boolean;

  constructor(socket: PktinfoUdpSocket, ownsSocket: boolean, gso = true) {
    this.socket = socket;
    this.gso = gso && process.env.OXY_QUIC_GSO !== '0';
    this.ownsSocket = ownsSocket;
    const address = socket.address();
    this.localAddress = address.address;
    this.localPort = address.port;
    this.closedPromise = new Promise((resolve) => (this.closedResolve = resolve));
    socket.on('batch', this.onBatch);
    socket.on('error', (err) => debug('socket error: %s', err.message));
    socket.on('close', () => this.onSocketClose());
  }

  /** Serve: accept new connections on this socket. */
  listen(server: ServerSide): void {
    this.server = server;
  }

  /**
   * Client: this socket carries exactly one connection. Only datagrams from the address
   * and port dialed reach it: a reply from another source address (a server that let the
   * kernel pick it) is dropped, as any QUIC client does.
   */
  attachClient(conn: QuicTunnelConnection, remoteHost: string, remotePort: number): void {
    this.client = { conn, host: canonicalAddress(remoteHost), port: remotePort };
    this.cidsOf.set(conn, []);
  }

  get connectionCount(): number {
    return this.cidsOf.size;
  }

  connections(): QuicTunnelConnection[] {
    return [...this.cidsOf.keys()];
  }

  /**
   * Stop: listeners take no new connections; every connection is closed with `code` and
   * `reason`; the socket closes (if ours) once their CONNECTION_CLOSE went out.
   */
  shutdown(code: number, reason: string): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      for (const conn of this.connections()) conn.close(code, reason);
      this.flush();
      // Draining connections are not waited for: their close went out above.
      for (const conn of this.connections()) conn.abandon(reason || 'endpoint closed');
      this.closeSocket();
    }
    return this.closedPromise;
  }

  // -------------------------------------------------------------------------- hooks

  markDirty(conn: QuicTunnelConnection): void {
    this.enqueue(conn);
    if (!this.flushing) this.scheduleFlush();
  }

  packetBuffer(size: number): Buffer {
    if (this.slabOffset + size > this.slab.length) {
      this.slab = Buffer.allocUnsafe(Math.max(SLAB_SIZE, size));
      this.slabOffset = 0;
    }
    return this.slab.subarray(this.slabOffset, this.slabOffset + size);
  }

  packetWritten(length: number): void {
    this.slabOffset += length;
  }

  sourceFor(host: string): string | undefined {
    if (!this.server) return undefined;
    return host === '::' || host === '0.0.0.0' ? undefined : host;
  }

  established(conn: QuicTunnelConnection): void {
    if (!this.server || this.closing) {
      conn.close(0x2, 'listener closing');
      return;
    }
    try {
      this.server.onConnection(conn);
    } catch (err) {
      debug('onConnection threw: %s', (err as Error).message);
      conn.close(0x2, 'internal error');
    }
  }

  released(conn: QuicTunnelConnection): void {
    for (const key of this.cidsOf.get(conn) ?? []) if (this.byCid.get(key) === conn) this.byCid.delete(key);
    this.cidsOf.delete(conn); // a queued entry stays: service() of a released connection does nothing
    if (this.client?.conn === conn) {
      this.client = undefined;
      this.closeSocket();
    }
  }

  // -------------------------------------------------------------------------- receive

  private readonly onBatch = (batch: UdpBatch): void => {
    const count = batch.count;
    for (let i = 0; i < count; i++) {
      if (batch.truncated(i)) continue;
      const packet = batch.payload(i);
      if (packet.length === 0) continue;
      const client = this.client;
      if (client) {
        if (batch.sourcePort(i) !== client.port || batch.sourceAddress(i) !== client.host) {
          this.strayPackets++;
          continue;
        }
        client.conn.receivePacket(packet);
        this.enqueue(client.conn);
        continue;
      }
      if (!this.server) continue;
      const key = routingKey(packet);
      if (key === undefined) continue;
      const from: QuicheHost = { host: batch.sourceAddress(i), port: batch.sourcePort(i) };
      const to: QuicheHost = { host: batch.destinationAddress(i) ?? this.localAddress, port: this.localPort };
      const conn = this.byCid.get(key);
      if (conn) {
        conn.receivePacket(packet, from, to);
        this.enqueue(conn);
      } else if ((packet[0]! & 0x80) !== 0) {
        this.newConnection(packet, from, to);
      } else if (this.server.resets && !this.closing) {
        const reset = this.server.resets.packet(packet.subarray(1, 1 + CID_LENGTH), packet.length);
        if (reset) this.sendNow([{ data: reset, address: from.host, port: from.port, sourceAddress: this.sourceFor(to.host) }]);
      }
    }
    this.flush();
  };

  private newConnection(packet: Buffer, from: QuicheHost, to: QuicheHost): void {
    const server = this.server!;
    if (this.closing || packet.length < quiche.MIN_CLIENT_INITIAL_LEN) return;
    let header;
    try {
      header = quiche.Header.fromSlice(packet, CID_LENGTH);
    } catch {
      return;
    }
    if (header.ty !== quiche.Type.Initial) return;
    if (!quiche.versionIsSupported(header.version)) {
      const out = Buffer.allocUnsafe(quiche.MAX_DATAGRAM_SIZE);
      const length = quiche.negotiateVersion(header.scid, header.dcid, out);
      this.sendNow([{ data: out.subarray(0, length), address: from.host, port: from.port, sourceAddress: this.sourceFor(to.host) }]);
      return;
    }
    if (this.cidsOf.size >= server.maxConnections) {
      debug('refusing %s:%d: %d connections', from.host, from.port, this.cidsOf.size);
      return;
    }
    let scid: Buffer;
    let odcid: Buffer | null = null;
    if (server.retry) {
      const token = header.token;
      if (!token || token.length === 0) {
        const newScid = randomBytes(CID_LENGTH);
        const out = Buffer.allocUnsafe(quiche.MAX_DATAGRAM_SIZE);
        const length = quiche.retry(header.scid, header.dcid, newScid, server.retry.mint(header.dcid, from.host), header.version, out);
        this.sendNow([{ data: out.subarray(0, length), address: from.host, port: from.port, sourceAddress: this.sourceFor(to.host) }]);
        return;
      }
      odcid = server.retry.validate(token, from.host) ?? null;
      if (!odcid || header.dcid.length !== CID_LENGTH) {
        debug('invalid retry token from %s:%d', from.host, from.port);
        return;
      }
      scid = Buffer.from(header.dcid);
    } else {
      scid = randomBytes(CID_LENGTH);
    }
    let quic;
    try {
      // quiche copies the transport parameters at accept: the token is this CID's alone.
      if (server.resets) server.config.setStatelessResetToken(server.resets.tokenValue(scid));
      quic = quiche.Connection.accept(scid, odcid, to, from, server.config);
    } catch (err) {
      debug('accept failed: %s', (err as Error).message);
      return;
    }
    const conn = new QuicTunnelConnection(this, quic, { role: 'edge', local: to, remote: from, keepAliveMs: server.keepAliveMs });
    const keys = [scid.toString('latin1')];
    // Without retry the client keeps addressing its own random DCID until it hears from us.
    if (!server.retry) keys.push(Buffer.from(header.dcid).toString('latin1'));
    for (const key of keys) this.byCid.set(key, conn);
    this.cidsOf.set(conn, keys);
    conn.receivePacket(packet, from, to);
    this.enqueue(conn);
  }

  // -------------------------------------------------------------------------- send

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = setImmediate(() => {
      this.flushScheduled = undefined;
      this.flush();
    });
  }

  /** Services every dirty connection and sends what they produced, in sendmmsg batches. */
  flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    if (this.flushScheduled) {
      clearImmediate(this.flushScheduled);
      this.flushScheduled = undefined;
    }
    let out: OutgoingDatagram[] = [];
    let again: QuicTunnelConnection[] | undefined;
    const list = this.dirtyList;
    try {
      // Connections made dirty while servicing (one stream feeding another) join this round.
      for (let i = 0; i < this.dirtyCount; i++) {
        const conn = list[i]!;
        list[i] = undefined;
        conn.queued = false;
        if (this.socket.closed) continue;
        if (conn.service(out)) (again ??= []).push(conn);
        if (out.length >= SEND_CHUNK) {
          this.sendNow(out);
          out = [];
        }
      }
      if (out.length > 0) this.sendNow(out);
    } finally {
      // The slots stay allocated for the next turn; only an exception leaves entries here.
      for (let i = 0; i < this.dirtyCount; i++) {
        const conn = list[i];
        if (conn) conn.queued = false;
        list[i] = undefined;
      }
      this.dirtyCount = 0;
      this.flushing = false;
    }
    // Work left (packet cap reached, or the kernel queue is full): next turn.
    if (again) for (const conn of again) this.enqueue(conn);
    if (this.dirtyCount > 0) this.scheduleFlush();
  }

  private enqueue(conn: QuicTunnelConnection): void {
    if (conn.queued) return;
    conn.queued = true;
    this.dirtyList[this.dirtyCount++] = conn;
  }

  private sendNow(datagrams: OutgoingDatagram[]): void {
    if (this.socket.closed || datagrams.length === 0) return;
    let list = this.gso ? coalesce(datagrams) : datagrams;
    let start = 0;
    for (let attempts = 0; start < list.length && attempts < 64; attempts++) {
      try {
        this.socket.sendBatch(start === 0 ? list : list.slice(start));
        return;
      } catch (err) {
        const index = start + ((err as { index?: number }).index ?? 0);
        const failed = list[index];
        if (failed?.segmentSize !== undefined) {
          // The kernel or the device has no UDP GSO: send datagram by datagram from now on.
          debug('UDP GSO refused (%s): disabled', (err as Error).message);
          this.gso = false;
          list = [...list.slice(start, index), ...split(list.slice(index))];
          start = 0;
          continue;
        }
        // The kernel refused one datagram (ENETUNREACH, EPERM from a firewall, …):
        // those before it went, skip it, send the rest.
        this.sendErrors++;
        this.lastSendError = err as Error;
        debug('send to %s failed: %s', failed?.address, (err as Error).message);
        start = index + 1;
      }
    }
  }

  // -------------------------------------------------------------------------- close

  private closeSocket(): void {
    if (this.ownsSocket) {
      if (!this.socket.closed) this.socket.close();
    } else {
      this.socket.off('batch', this.onBatch);
      this.onSocketClose();
    }
  }

  private onSocketClose(): void {
    if (this.flushScheduled) clearImmediate(this.flushScheduled);
    this.flushScheduled = undefined;
    for (const conn of this.connections()) conn.abandon('UDP socket closed');
    this.closedResolve?.();
    this.closedResolve = undefined;
  }
}

/** Segments per GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels) and bytes. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65_000;

/**
 * Runs of packets to the same destination, from the same source, of equal size (the last
 * may be shorter) and back to back in one slab become one datagram with `segmentSize`.
 */
export function coalesce(datagrams: readonly OutgoingDatagram[]): OutgoingDatagram[] {
  const out: OutgoingDatagram[] = [];
  let i = 0;
  while (i < datagrams.length) {
    const first = datagrams[i]!;
    const size = first.data.length;
    let end = first.data.byteOffset + size;
    let j = i + 1;
    while (j < datagrams.length && j - i < GSO_MAX_SEGMENTS) {
      const next = datagrams[j]!;
      const data = next.data;
      if (
        data.buffer !== first.data.buffer ||
        data.byteOffset !== end ||
        data.length > size ||
        end + data.length - first.data.byteOffset > GSO_MAX_BYTES ||
        next.port !== first.port ||
        next.address !== first.address ||
        next.sourceAddress !== first.sourceAddress
      ) {
        break;
      }
      end += data.length;
      j++;
      if (data.length < size) break; // a short one ends the run
    }
    if (j - i === 1) {
      out.push(first);
    } else {
      const data = Buffer.from(first.data.buffer, first.data.byteOffset, end - first.data.byteOffset);
      out.push({ data, address: first.address, port: first.port, sourceAddress: first.sourceAddress, segmentSize: size });
    }
    i = j;
  }
  return out;
}

/** GSO datagrams back into their segments. */
function split(datagrams: readonly OutgoingDatagram[]): OutgoingDatagram[] {
  const out: OutgoingDatagram[] = [];
  for (const d of datagrams) {
    const size = d.segmentSize;
    if (size === undefined) {
      out.push(d);
      continue;
    }
    for (let off = 0; off < d.data.length; off += size) {
      out.push({ data: d.data.subarray(off, off + size), address: d.address, port: d.port, sourceAddress: d.sourceAddress });
    }
  }
  return out;
}

/** An IP address as the native socket prints sources: RFC 5952 for IPv6, plain IPv4 for v4-mapped. */
export function canonicalAddress(address: string): string {
  if (!address.includes(':')) return address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  const [bare, scope] = address.split('%');
  const text = new URL(`http://[${bare}]`).hostname.slice(1, -1);
  return scope ? `${text}%${scope}` : text;
}

/** The destination connection ID of a packet as a map key, or undefined when malformed. */
function routingKey(packet: Buffer): string | undefined {
  if ((packet[0]! & 0x80) === 0) {
    return packet.length > CID_LENGTH ? packet.toString('latin1', 1, 1 + CID_LENGTH) : undefined;
  }
  if (packet.length < 7) return undefined;
  const length = packet[5]!;
  if (length > 20 || packet.length < 6 + length) return undefined;
  return packet.toString('latin1', 6, 6 + length);
}
