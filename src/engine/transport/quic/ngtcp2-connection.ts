/**
 * The connector's QUIC connection on ngtcp2 (`OXY_QUIC_IMPL=ngtcp2`): the same TunnelConnection
 * and stream framing as ./connection.ts over quiche, but the addon (native/cpp/quicclient.cc)
 * owns the UDP socket, ngtcp2's timer and every packet; JS only sees stream bytes and events,
 * one batch per loop callback, and writes stream bytes that the addon packs into packets
 * (several streams per packet) once per loop turn.
 *
 *  - streams: ./stream.ts unchanged (END frame + FIN, resets with STREAM_RESET_CODE);
 *  - reads pause by withholding flow-control credit (`setReadPaused`) while the Duplex is full;
 *  - writes: the addon copies and keeps bytes until acknowledged; above QUIC_CLIENT_HIGH_WATER
 *    unsent bytes a stream's write waits for the addon's WRITABLE event;
 *  - certificate: GnuTLS verifies the chain against the CA (and the name when dialing one);
 *    the IP SAN and the CA pin are checked here after the handshake, as for quiche;
 *  - close codes, close reasons and dial failures read as those of the quiche client.
 */
import { debuglog } from 'node:util';
import { OxyError } from '../../../core/errors.js';
import {
  createQuicClient,
  QUIC_CLIENT_HIGH_WATER,
  QuicClientClose,
  QuicClientEvent,
  type NativeQuicClient,
  type NativeQuicClientOptions,
} from '../../native/index.js';
import { TunnelCloseCode } from '../../protocol/codes.js';
import type { AcceptStreamOptions, OpenStreamOptions, TunnelCloseInfo, TunnelConnection, TunnelConnectionStats, TunnelStream } from '../types.js';
import { abortedError, StreamInbox, truncateUtf8 } from '../common.js';
import { QUIC_ALPN } from './config.js';
import { describeTransportError, QuicDialError, STREAM_RESET_CODE, verifyEdgeChain, type ClientVerification, type QuicDialFailure } from './connection.js';
import { QuicStream, type QuicStreamOwner } from './stream.js';

const debug = debuglog('oxy:transport:quic');

const MAX_REASON_BYTES = 1024;
const CRYPTO_ERROR_START = 0x100;
const CRYPTO_ERROR_STOP = 0x1ff;

interface QueuedOpen {
  resolve: (stream: TunnelStream) => void;
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class Ngtcp2TunnelConnection implements TunnelConnection, QuicStreamOwner {
  readonly protocol = 'quic' as const;
  readonly role = 'connector' as const;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly supportsDatagrams = true;
  readonly datagramsReliable = false;
  readonly closed: Promise<TunnelCloseInfo>;
  readonly handshake: Promise<void>;
  /** Packets the kernel refused (ICMP unreachable, EPERM): the auto fallback's "UDP blocked" hint. */
  sendErrors = 0;
  lastSendError: Error | undefined;

  private readonly native: NativeQuicClient;
  private readonly verify: ClientVerification;
  private resolveClosed!: (info: TunnelCloseInfo) => void;
  private resolveHandshake!: () => void;
  private rejectHandshake!: (err: Error) => void;
  private closeInfo: TunnelCloseInfo | undefined;
  private isEstablished = false;
  private released = false;
  private maxDatagram = 0;
  private failure: QuicDialFailure | undefined;

  private readonly streams = new Map<number, QuicStream>();
  private peerWatermark = 0;
  private readonly peerSeenAbove = new Set<number>();
  private readonly inbox = new StreamInbox();
  private readonly openQueue: QueuedOpen[] = [];
  private datagramHandler: ((data: Buffer) => void) | undefined;
  private readonly counters = { datagramsSent: 0, datagramsReceived: 0, datagramsDropped: 0 };
  private awaitingSince = 0;
  private readonly probeWaiters: ((answered: boolean) => void)[] = [];

  constructor(options: NativeQuicClientOptions, verify: ClientVerification) {
    this.verify = verify;
    this.remoteAddress = options.remoteAddress;
    this.remotePort = options.remotePort;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.handshake = new Promise((resolve, reject) => {
      this.resolveHandshake = resolve;
      this.rejectHandshake = reject;
    });
    this.handshake.catch(() => {});
    this.native = createQuicClient(options, this.onEvents);
    const local = this.native.info().localAddress;
    this.localAddress = local.address;
    this.localPort = local.port;
  }

  get isClosed(): boolean {
    return this.closeInfo !== undefined;
  }

  get maxDatagramSize(): number {
    return this.maxDatagram;
  }

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

  sendDatagram(data: Uint8Array): boolean {
    if (this.closeInfo || !this.isEstablished || data.length > this.maxDatagram || !this.native.sendDatagram(data)) {
      this.counters.datagramsDropped++;
      return false;
    }
    this.counters.datagramsSent++;
    return true;
  }

  onDatagram(handler: (data: Buffer) => void): void {
    this.datagramHandler = handler;
  }

  /** Closes now for the application; on the wire, queued stream data goes first, then CONNECTION_CLOSE. */
  close(code: number = TunnelCloseCode.NO_ERROR, reason = ''): void {
    if (this.closeInfo) return;
    this.finish({ code, reason, remote: false });
    if (!this.released) this.native.closeConnection(code, truncateUtf8(reason, MAX_REASON_BYTES).toString('utf8'), false);
  }

  stats(): TunnelConnectionStats {
    return { activeStreams: this.streams.size, queuedOpens: this.openQueue.length, ...this.counters };
  }

  probe(): Promise<boolean> {
    if (this.closeInfo || !this.isEstablished) return Promise.resolve(false);
    this.native.probe();
    this.awaitingSince ||= performance.now();
    return new Promise((resolve) => this.probeWaiters.push(resolve));
  }

  unansweredMs(): number {
    return this.awaitingSince && performance.now() - this.awaitingSince;
  }

  /** ngtcp2's path figures (0.12 keeps no loss count the driver can read). */
  quicStats(): { lost: number; sent: number; recv: number; rttMs: number; cwnd: number } {
    if (this.released) return { lost: 0, sent: 0, recv: 0, rttMs: 0, cwnd: 0 };
    const info = this.native.info();
    return { lost: 0, sent: info.sent, recv: info.recv, rttMs: info.rttMs, cwnd: info.cwnd };
  }

  /** Streams the addon still holds: bytes not yet acknowledged, or not closed by ngtcp2 yet. */
  nativeStreams(): number {
    return this.released ? 0 : this.native.info().streams;
  }

  /** Drops the connection without a packet (the dial was abandoned before the handshake). */
  abandon(reason: string): void {
    this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', reason) });
    this.release();
  }

  // -------------------------------------------------------------------------- QuicStreamOwner

  flushStream(stream: QuicStream): boolean {
    if (this.closeInfo || stream.destroyed) return false;
    const pending = stream.pending;
    let unsent = 0;
    for (let i = 0; i < pending.length; i++) {
      const item = pending[i]!;
      unsent = this.native.write(stream.id, item.buf, item.fin);
      if (unsent < 0) {
        stream.pending = [];
        stream.destroy(new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${stream.id} takes no more data`));
        return false;
      }
      if (item.fin) stream.localEnded = true;
    }
    stream.pending = [];
    // The bytes are the addon's now; past its high-water mark the write waits for WRITABLE.
    return unsent <= QUIC_CLIENT_HIGH_WATER;
  }

  resumeRead(stream: QuicStream): void {
    if (!this.released) this.native.setReadPaused(stream.id, false);
  }

  streamDestroyed(stream: QuicStream, reset: boolean): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    if (reset && !this.closeInfo && !this.released) this.native.shutdownStream(stream.id, STREAM_RESET_CODE);
  }

  closedError(): OxyError | undefined {
    return this.closeInfo ? this.closedErrorNow() : undefined;
  }

  // -------------------------------------------------------------------------- events

  private readonly onEvents = (batch: Buffer): void => {
    for (let at = 0; at + 16 <= batch.length; ) {
      const type = batch[at]!;
      const flag = batch[at + 1]!;
      const length = batch.readUInt32LE(at + 4);
      const id = batch.readDoubleLE(at + 8);
      const data = batch.subarray(at + 16, at + 16 + length);
      at += 16 + length;
      switch (type) {
        case QuicClientEvent.DATA:
          this.onData(id, data, flag === 1);
          break;
        case QuicClientEvent.HANDSHAKE:
          this.onEstablished();
          break;
        case QuicClientEvent.RESET:
          this.streams.get(id)?.abortedByPeer('reset', data.readDoubleLE(0));
          break;
        case QuicClientEvent.STOP_SENDING:
          this.streams.get(id)?.abortedByPeer('stopped', data.readDoubleLE(0));
          break;
        case QuicClientEvent.WRITABLE:
          this.streams.get(id)?.drained();
          break;
        case QuicClientEvent.DATAGRAM:
          this.counters.datagramsReceived++;
          this.datagramHandler?.(data);
          break;
        case QuicClientEvent.ANSWERED:
          this.awaitingSince = 0;
          if (this.probeWaiters.length) for (const answered of this.probeWaiters.splice(0)) answered(true);
          break;
        case QuicClientEvent.SEND_ERROR:
          this.sendErrors++;
          this.lastSendError = new Error(`UDP: errno ${data.readDoubleLE(0)}`);
          break;
        case QuicClientEvent.CLOSED:
          this.onClosed(flag, data.readDoubleLE(0), data.subarray(8).toString('utf8'));
          break;
        default:
          break; // STREAM_CLOSED, STREAMS_AVAILABLE: the open queue is served below
      }
    }
    this.serveOpens();
  };

  private onData(id: number, data: Buffer, fin: boolean): void {
    let stream = this.streams.get(id);
    if (!stream) {
      // Ours (even ids) or a peer stream seen before: a stream we are done with.
      if ((id & 3) !== 1 || !this.firstSightOfPeerStream(id >> 2) || this.closeInfo) return;
      stream = new QuicStream(this, id, false);
      this.streams.set(id, stream);
      this.inbox.deliver(stream);
    }
    if (stream.remoteEnded || stream.destroyed) return;
    const paused = stream.readPaused;
    if (data.length > 0) {
      try {
        stream.receive(data);
      } catch (err) {
        stream.destroy(err as Error);
        return;
      }
    }
    if (fin) stream.receiveFin();
    if (!paused && stream.readPaused && !stream.remoteEnded) this.native.setReadPaused(id, true);
  }

  private firstSightOfPeerStream(index: number): boolean {
    if (index < this.peerWatermark || this.peerSeenAbove.has(index)) return false;
    if (index === this.peerWatermark) {
      this.peerWatermark++;
      while (this.peerSeenAbove.delete(this.peerWatermark)) this.peerWatermark++;
    } else {
      this.peerSeenAbove.add(index);
    }
    return true;
  }

  private serveOpens(): void {
    while (this.openQueue.length > 0 && !this.closeInfo) {
      const stream = this.tryOpen();
      if (!stream) return;
      const item = this.openQueue.shift()!;
      if (item.onAbort) item.signal?.removeEventListener('abort', item.onAbort);
      item.resolve(stream);
    }
  }

  private tryOpen(): QuicStream | undefined {
    if (!this.isEstablished || this.closeInfo) return undefined;
    const id = this.native.openStream();
    if (id < 0) return undefined;
    const stream = new QuicStream(this, id, true);
    this.streams.set(id, stream);
    this.awaitingSince ||= performance.now();
    this.flushStream(stream); // the preamble: the peer sees the stream at once
    return stream;
  }

  /** Handshake done: ALPN, IP SAN and pin, then release the dialer. */
  private onEstablished(): void {
    if (this.isEstablished || this.closeInfo) return;
    const info = this.native.info();
    const problem = info.alpn !== QUIC_ALPN ? `the edge chose ALPN "${info.alpn}"` : verifyEdgeChain(this.native.peerCertificates(), this.verify);
    if (problem) {
      const pin = problem.startsWith('pin:');
      const message = pin ? problem.slice(4) : problem;
      this.native.closeConnection(CRYPTO_ERROR_START + 42 /* bad_certificate */, '', true);
      const err = new QuicDialError(pin ? 'OXY_ERR_TUNNEL_PIN_MISMATCH' : 'OXY_ERR_TUNNEL_HANDSHAKE', 'tls', message);
      this.rejectHandshake(err);
      this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason: message, remote: false, error: err });
      return;
    }
    this.isEstablished = true;
    this.maxDatagram = info.maxDatagramSize;
    debug('connector (ngtcp2) established with %s:%d', this.remoteAddress, this.remotePort);
    this.resolveHandshake();
  }

  /** The addon closed the connection (it tears its side down after this batch). */
  private onClosed(kind: number, code: number, reason: string): void {
    this.released = true;
    if (this.closeInfo) return;
    switch (kind) {
      case QuicClientClose.PEER_APPLICATION:
        this.failure = 'refused';
        this.finish({ code, reason, remote: true });
        return;
      case QuicClientClose.PEER_TRANSPORT: {
        const what = describeTransportError(code);
        const tls = code >= CRYPTO_ERROR_START && code <= CRYPTO_ERROR_STOP;
        // no_application_protocol: the edge speaks QUIC, but not our ALPN — a refusal, not a TLS failure.
        this.failure = tls && code !== CRYPTO_ERROR_START + 120 ? 'tls' : 'refused';
        const err = new OxyError('OXY_ERR_TUNNEL_CLOSED', `QUIC peer closed the connection: ${what}${reason ? ` (${reason})` : ''}`);
        this.finish({ code: code === 0 ? TunnelCloseCode.NO_ERROR : TunnelCloseCode.PROTOCOL_ERROR, reason: reason || what, remote: true, error: err });
        return;
      }
      case QuicClientClose.LOCAL_ERROR: {
        const tls = code >= CRYPTO_ERROR_START && code <= CRYPTO_ERROR_STOP;
        this.failure = tls ? 'tls' : 'closed';
        const message = `QUIC connection failed: ${describeTransportError(code)}${reason ? ` (${reason})` : ''}`;
        this.finish({ code: TunnelCloseCode.PROTOCOL_ERROR, reason: message, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', message) });
        return;
      }
      default: {
        const message =
          kind === QuicClientClose.STATELESS_RESET
            ? 'QUIC stateless reset: the peer no longer knows this connection'
            : this.isEstablished
              ? 'QUIC idle timeout: no packet from the peer'
              : 'QUIC handshake timed out';
        this.failure = kind === QuicClientClose.STATELESS_RESET ? 'refused' : 'timeout';
        this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason: message, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', message) });
      }
    }
  }

  private finish(info: TunnelCloseInfo): void {
    for (const answered of this.probeWaiters.splice(0)) answered(false);
    if (this.closeInfo) return;
    this.closeInfo = info;
    debug('connector (ngtcp2) closed: %d %s (remote %s)', info.code, info.reason, info.remote);
    if (!this.isEstablished) {
      this.rejectHandshake(
        new QuicDialError(
          'OXY_ERR_TUNNEL_HANDSHAKE',
          this.failure ?? 'closed',
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
      // A stream whose END arrived in the same batch as the close is complete (as over quiche).
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

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.native.close();
  }

  private closedErrorNow(): OxyError {
    const info = this.closeInfo;
    return new OxyError('OXY_ERR_TUNNEL_CLOSED', `Tunnel connection closed${info?.reason ? `: ${info.reason}` : ''}`, { cause: info });
  }
}
