/**
 * What a QUIC TunnelConnection is whatever library carries it: quiche through our driver
 * (./connection.ts) or ngtcp2 in the addon (./ngtcp2-connection.ts). The base holds the
 * streams, the inbox of peer streams, the queue of opens waiting for the peer's stream limit,
 * datagram handler and counters, probe waiters, and the close: `finish()` fails what waits and
 * cuts the streams, once. Subclasses say how a stream opens (`tryOpen`), why a dial failed
 * (`dialFailure`) and what else to drop on close (`onFinish`).
 */
import { debuglog } from 'node:util';
import { OxyError } from '../../../core/errors.js';
import type { AcceptStreamOptions, OpenStreamOptions, TunnelCloseInfo, TunnelConnectionStats, TunnelRole, TunnelStream } from '../types.js';
import { abortedError, StreamInbox } from '../common.js';
import { QUIC_ALPN } from './config.js';
import { QuicDialError, verifyEdgeChain, type ClientVerification, type QuicDialFailure } from './errors.js';
import { QuicStream, type QuicStreamOwner } from './stream.js';

const debug = debuglog('oxy:transport:quic');

interface QueuedOpen {
  resolve: (stream: TunnelStream) => void;
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export abstract class QuicConnectionBase implements QuicStreamOwner {
  readonly protocol = 'quic' as const;
  readonly role: TunnelRole;
  abstract readonly localAddress: string;
  abstract readonly localPort: number;
  abstract readonly remoteAddress: string;
  abstract readonly remotePort: number;
  readonly supportsDatagrams = true;
  readonly datagramsReliable = false;
  readonly closed: Promise<TunnelCloseInfo>;
  /** Set once the handshake completes (and, on the client, verification passed). */
  readonly handshake: Promise<void>;

  protected resolveClosed!: (info: TunnelCloseInfo) => void;
  protected resolveHandshake!: () => void;
  protected rejectHandshake!: (err: Error) => void;
  protected closeInfo: TunnelCloseInfo | undefined;
  protected isEstablished = false;
  protected maxDatagram = 0;

  protected readonly streams = new Map<number, QuicStream>();
  /** Peer-opened bidi streams: every index below this was seen; `peerSeenAbove` holds later ones. */
  protected peerWatermark = 0;
  private readonly peerSeenAbove = new Set<number>();
  /** Bit 0 of the ids of streams the peer opens (0: client-initiated). */
  protected readonly peerBit: number;
  protected readonly inbox = new StreamInbox();
  protected readonly openQueue: QueuedOpen[] = [];
  protected datagramHandler: ((data: Buffer) => void) | undefined;
  protected readonly counters = { datagramsSent: 0, datagramsReceived: 0, datagramsDropped: 0 };
  /** When something sent started waiting for the peer's next packet (0: nothing waits). */
  protected awaitingSince = 0;
  protected readonly probeWaiters: ((answered: boolean) => void)[] = [];

  constructor(role: TunnelRole) {
    this.role = role;
    // QUIC stream ids: bit 0 is the initiator (0 client, 1 server), bit 1 set for unidirectional.
    this.peerBit = role === 'connector' ? 1 : 0;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.handshake = new Promise((resolve, reject) => {
      this.resolveHandshake = resolve;
      this.rejectHandshake = reject;
    });
    this.handshake.catch(() => {});
  }

  get isClosed(): boolean {
    return this.closeInfo !== undefined;
  }

  /** Largest datagram sendDatagram() takes (QUIC DATAGRAM payload on this path). */
  get maxDatagramSize(): number {
    return this.maxDatagram;
  }

  // -------------------------------------------------------------------------- the library's side

  /** A new local stream now, or undefined while the peer's stream limit (or the handshake) holds it back. */
  protected abstract tryOpen(): QuicStream | undefined;
  /** Why the dial failed, for a connection closed before its handshake completed. */
  protected abstract dialFailure(info: TunnelCloseInfo): QuicDialFailure;
  /** Drop what the subclass holds once closed (timers, blocked writers). */
  protected onFinish(): void {}

  abstract flushStream(stream: QuicStream): boolean;
  abstract resumeRead(stream: QuicStream): void;
  abstract streamDestroyed(stream: QuicStream, reset: boolean): void;

  // -------------------------------------------------------------------------- public API

  openStream(options: OpenStreamOptions = {}): Promise<TunnelStream> {
    if (this.closeInfo) return Promise.reject(this.closedErrorNow());
    if (options.signal?.aborted) return Promise.reject(abortedError());
    if (this.openQueue.length === 0) {
      const stream = this.tryOpen();
      if (stream) return Promise.resolve(stream);
    }
    return new Promise((resolve, reject) => {
      const item: QueuedOpen = { resolve, reject, signal: options.signal };
      if (options.signal) {
        item.onAbort = () => {
          const i = this.openQueue.indexOf(item);
          if (i >= 0) {
            this.openQueue.splice(i, 1);
            reject(abortedError());
          }
        };
        options.signal.addEventListener('abort', item.onAbort, { once: true });
      }
      this.openQueue.push(item);
    });
  }

  onStream(handler: (stream: TunnelStream) => void): void {
    this.inbox.onStream(handler);
  }

  acceptStream(options: AcceptStreamOptions = {}): Promise<TunnelStream> {
    return this.inbox.accept(options, () => (this.closeInfo ? this.closedErrorNow() : undefined));
  }

  onDatagram(handler: (data: Buffer) => void): void {
    this.datagramHandler = handler;
  }

  stats(): TunnelConnectionStats {
    return { activeStreams: this.streams.size, queuedOpens: this.openQueue.length, ...this.counters };
  }

  activeStreams(): number {
    return this.streams.size;
  }

  unansweredMs(): number {
    return this.awaitingSince && performance.now() - this.awaitingSince;
  }

  closedError(): OxyError | undefined {
    return this.closeInfo ? this.closedErrorNow() : undefined;
  }

  // -------------------------------------------------------------------------- for subclasses

  /** A packet from the peer arrived: nothing waits for an answer any more. */
  protected answered(): void {
    this.awaitingSince = 0;
    if (this.probeWaiters.length) for (const answered of this.probeWaiters.splice(0)) answered(true);
  }

  /** Opens waiting for the peer's stream limit, in order, as far as it lets them. */
  protected serveOpens(): void {
    while (this.openQueue.length > 0 && !this.closeInfo) {
      const stream = this.tryOpen();
      if (!stream) return;
      const item = this.openQueue.shift()!;
      if (item.onAbort) item.signal?.removeEventListener('abort', item.onAbort);
      item.resolve(stream);
    }
  }

  /** A local stream with id `id`: announced at once with its preamble. */
  protected openLocal(id: number): QuicStream {
    const stream = new QuicStream(this, id, true);
    this.streams.set(id, stream);
    // Its first packet is ack-eliciting: a live peer answers within a round trip.
    this.awaitingSince ||= performance.now();
    this.flushStream(stream); // the preamble: the peer sees the stream at once
    return stream;
  }

  /**
   * The stream the peer opened with id `id`, delivered to the inbox, when this is the first we
   * hear of it; undefined for our own ids, unidirectional ones and streams we are done with.
   */
  protected adoptPeerStream(id: number): QuicStream | undefined {
    if ((id & 2) !== 0 || (id & 1) !== this.peerBit || this.closeInfo || !this.firstSightOfPeerStream(id >> 2)) return undefined;
    const stream = new QuicStream(this, id, false);
    this.streams.set(id, stream);
    this.inbox.deliver(stream);
    return stream;
  }

  /** The peer's stream index seen for the first time (a later packet of a finished stream is not). */
  protected firstSightOfPeerStream(index: number): boolean {
    if (index < this.peerWatermark || this.peerSeenAbove.has(index)) return false;
    if (index === this.peerWatermark) {
      this.peerWatermark++;
      while (this.peerSeenAbove.delete(this.peerWatermark)) this.peerWatermark++;
    } else {
      this.peerSeenAbove.add(index);
    }
    return true;
  }

  /**
   * The client's checks once the handshake is done: the ALPN, then (`verify`) the IP SAN and the
   * CA pin. Returns the dial error to fail with, or undefined when the edge passed.
   */
  protected checkEdge(alpn: string, certs: () => readonly Uint8Array[], verify: ClientVerification | undefined): QuicDialError | undefined {
    const problem = alpn !== QUIC_ALPN ? `the edge chose ALPN "${alpn}"` : verify ? verifyEdgeChain(certs(), verify) : undefined;
    if (!problem) return undefined;
    const pin = problem.startsWith('pin:');
    return new QuicDialError(pin ? 'OXY_ERR_TUNNEL_PIN_MISMATCH' : 'OXY_ERR_TUNNEL_HANDSHAKE', 'tls', pin ? problem.slice(4) : problem);
  }

  /** Closed for the application, once: what waits fails, streams are cut (a complete one ends). */
  protected finish(info: TunnelCloseInfo): void {
    for (const answered of this.probeWaiters.splice(0)) answered(false);
    if (this.closeInfo) return;
    this.closeInfo = info;
    debug('%s closed: %d %s (remote %s)', this.role, info.code, info.reason, info.remote);
    this.onFinish();
    if (!this.isEstablished) {
      this.rejectHandshake(
        new QuicDialError(
          'OXY_ERR_TUNNEL_HANDSHAKE',
          this.dialFailure(info),
          `QUIC handshake with ${this.remoteAddress}:${this.remotePort} failed: ${info.reason || 'connection closed'}`,
          info.error ?? info,
        ),
      );
    }
    const err = this.closedErrorNow();
    for (const item of this.openQueue.splice(0)) {
      if (item.onAbort) item.signal?.removeEventListener('abort', item.onAbort);
      item.reject(err);
    }
    this.inbox.fail(err);
    for (const stream of [...this.streams.values()]) {
      // A stream whose END arrived in the same batch as the close is complete: let its reader
      // see 'end' (as HTTP/2 does) rather than an error for data it already has.
      if (stream.remoteEnded && stream.writableFinished) {
        if (stream.readableEnded) stream.destroy();
        else stream.once('end', () => stream.destroy());
      } else {
        stream.destroy(err);
      }
    }
    this.streams.clear();
    this.resolveClosed(info);
  }

  protected closedErrorNow(): OxyError {
    const info = this.closeInfo;
    return new OxyError('OXY_ERR_TUNNEL_CLOSED', `Tunnel connection closed${info?.reason ? `: ${info.reason}` : ''}`, { cause: info });
  }
}
