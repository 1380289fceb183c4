/**
 * A TunnelConnection over one quiche connection. The connector is the QUIC client, the
 * edge the server; either side opens bidirectional streams directly (no reverse-open
 * dance as over HTTP/2).
 *
 * The connection never touches the socket. Its endpoint (./endpoint.ts) feeds it packets
 * (`receivePacket`) and, once per event-loop turn for every connection that has work,
 * calls `service(out)`: deliver what quiche has for the application (established,
 * readable streams, datagrams, credit for blocked writers, stream slots for queued
 * opens, the peer's close), then append every packet quiche wants to send to `out`
 * (capped per turn), then arm the one quiche timer of this connection. Application calls
 * (write, open, datagram, close) only queue work in quiche and mark the connection dirty.
 *
 *  - streams: ./stream.ts, framing in ./framing.ts (END frame + FIN, never FIN alone);
 *  - resets: a destroy before both ends sends RESET_STREAM and STOP_SENDING with
 *    STREAM_RESET_CODE; the peer's stream errors with OXY_ERR_STREAM_RESET;
 *  - datagrams: QUIC DATAGRAM frames (unreliable, unordered); dropped and counted when
 *    larger than `maxDatagramSize` or when quiche's send queue is full;
 *  - close(code, reason): CONNECTION_CLOSE (application) with both; the peer's `closed`
 *    resolves with them. Streams are destroyed with OXY_ERR_TUNNEL_CLOSED.
 */
import { debuglog } from 'node:util';
import { OxyError } from '../../../core/errors.js';
import type { OutgoingDatagram } from '../../native/index.js';
import { TunnelCloseCode } from '../../protocol/codes.js';
import type { TunnelCloseInfo, TunnelConnection, TunnelRole } from '../types.js';
import { truncateUtf8 } from '../common.js';
import { QuicConnectionBase } from './base.js';
import { quiche, type QuicheConnection, type QuicheHost, type QuicheRecvInfo } from './config.js';
import { describeTransportError, type ClientVerification, type QuicDialFailure } from './errors.js';
import { QuicStream } from './stream.js';

export { describeTransportError, QuicDialError, verifyEdgeChain, type ClientVerification, type QuicDialFailure } from './errors.js';

const debug = debuglog('oxy:transport:quic');

/** Application error code of RESET_STREAM / STOP_SENDING when a stream is destroyed early. */
export const STREAM_RESET_CODE = 0x10c;
/** Longest close reason sent in CONNECTION_CLOSE. */
const MAX_REASON_BYTES = 1024;
/** Packets one connection may emit per service before yielding to the event loop. */
const MAX_PACKETS_PER_SERVICE = 256;
const READ_CHUNK = 256 * 1024;
/** Up to this many open streams, deliver() asks quiche stream by stream instead of iterating readable(). */
const SCAN_STREAMS = 64;

/** What a connection needs from the endpoint that owns its socket. */
export interface QuicEndpointHooks {
  /** Run service() of this connection soon (once per event-loop turn). */
  markDirty(conn: QuicTunnelConnection): void;
  /** Room for one outgoing packet of up to `size` bytes, cut from a slab that lives until sent. */
  packetBuffer(size: number): Buffer;
  /** The last packetBuffer() holds a packet of `length` bytes now: the next one starts after it. */
  packetWritten(length: number): void;
  /** The local source address to send from, or undefined to let the kernel choose. */
  sourceFor(host: string): string | undefined;
  /** Server: the handshake completed (deliver to onConnection). */
  established(conn: QuicTunnelConnection): void;
  /** quiche is done with this connection (drained or timed out): drop its routing entries. */
  released(conn: QuicTunnelConnection): void;
}

export interface QuicConnectionOptions {
  role: TunnelRole;
  local: QuicheHost;
  remote: QuicheHost;
  keepAliveMs: number;
  verify?: ClientVerification;
}

let readScratch: Buffer | undefined;

export class QuicTunnelConnection extends QuicConnectionBase implements TunnelConnection {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;

  /** @internal the endpoint has this connection in its list for the next flush. */
  queued = false;
  /** @internal the quiche connection (the endpoint feeds it). */
  readonly quic: QuicheConnection;
  private readonly hooks: QuicEndpointHooks;
  private readonly verify: ClientVerification | undefined;
  private readonly recvInfo: QuicheRecvInfo;
  private released = false;
  private inService = false;
  /** close() was called: CONNECTION_CLOSE goes out in the next service, after pending data. */
  private pendingClose: { code: number; reason: Buffer } | undefined;

  private readonly blocked = new Set<QuicStream>();
  private readonly resumed = new Set<QuicStream>();
  private nextLocalId: number;

  private timer: NodeJS.Timeout | undefined;
  private timerDeadline = 0;
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(hooks: QuicEndpointHooks, quic: QuicheConnection, options: QuicConnectionOptions) {
    super(options.role);
    this.hooks = hooks;
    this.quic = quic;
    this.verify = options.verify;
    this.localAddress = options.local.host;
    this.localPort = options.local.port;
    this.remoteAddress = options.remote.host;
    this.remotePort = options.remote.port;
    this.recvInfo = { from: options.remote, to: options.local };
    this.nextLocalId = options.role === 'connector' ? 0 : 1;
    if (options.keepAliveMs > 0) {
      this.keepAlive = setInterval(() => {
        if (this.closeInfo) return;
        try {
          this.quic.sendAckEliciting();
        } catch {
          return;
        }
        this.hooks.markDirty(this);
      }, options.keepAliveMs);
      this.keepAlive.unref();
    }
  }

  // -------------------------------------------------------------------------- public API

  sendDatagram(data: Uint8Array): boolean {
    if (this.closeInfo || !this.isEstablished || data.length > this.maxDatagram || this.quic.isDgramSendQueueFull()) {
      this.counters.datagramsDropped++;
      return false;
    }
    try {
      this.quic.dgramSend(data);
    } catch (err) {
      debug('%s dgramSend: %s', this.role, (err as Error).message);
      this.counters.datagramsDropped++;
      return false;
    }
    this.counters.datagramsSent++;
    this.hooks.markDirty(this);
    return true;
  }

  /**
   * Closes now for the application (closed resolves, streams fail); on the wire, what the
   * streams already handed to quiche goes out first (as far as the congestion window lets
   * it in this turn), then CONNECTION_CLOSE — so a last control message (an `error`
   * before an UNAUTHORIZED close) usually reaches the peer. No retransmission after that.
   */
  close(code: number = TunnelCloseCode.NO_ERROR, reason = ''): void {
    if (this.closeInfo) return;
    this.pendingClose = { code, reason: truncateUtf8(reason, MAX_REASON_BYTES) };
    this.finish({ code, reason, remote: false });
    this.hooks.markDirty(this);
  }

  probe(): Promise<boolean> {
    if (this.closeInfo || !this.isEstablished) return Promise.resolve(false);
    try {
      this.quic.sendAckEliciting();
    } catch {
      return Promise.resolve(false);
    }
    this.awaitingSince ||= performance.now();
    this.hooks.markDirty(this);
    return new Promise((resolve) => this.probeWaiters.push(resolve));
  }

  /** quiche's connection statistics (packets, losses, bytes) and the path's RTT/cwnd. */
  quicStats(): { lost: number; sent: number; recv: number; rttMs: number; cwnd: number } {
    const s = this.quic.stats();
    const path = this.quic.pathStats()[0];
    return { lost: s.lost, sent: s.sent, recv: s.recv, rttMs: path?.rtt ?? 0, cwnd: path?.cwnd ?? 0 };
  }

  // -------------------------------------------------------------------------- endpoint side

  /** Feeds one received UDP payload to quiche (`to` = the local address it arrived on). */
  receivePacket(packet: Buffer, from?: QuicheHost, to?: QuicheHost): void {
    const info = from === undefined ? this.recvInfo : { from, to: to ?? this.recvInfo.to };
    this.answered();
    try {
      this.quic.recv(packet, info);
    } catch (err) {
      // quiche drops what it cannot use (bad packet, TLS alert); a fatal error leaves
      // localError set and the connection draining — service() reports it.
      debug('%s recv: %s', this.role, (err as Error).message);
    }
  }

  /** Called on quiche's timer. */
  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.quic.onTimeout();
    this.hooks.markDirty(this);
  };

  /**
   * Delivers quiche's news to the application, then appends this connection's packets to
   * `out`. Returns true when it stopped early with more to send.
   */
  service(out: OutgoingDatagram[]): boolean {
    if (this.released) return false;
    this.inService = true;
    let more = false;
    try {
      if (!this.closeInfo) this.deliver();
      more = this.emit(out);
      const pending = this.pendingClose;
      if (pending) {
        this.pendingClose = undefined;
        try {
          this.quic.close(true, pending.code, pending.reason);
        } catch (err) {
          debug('%s close: %s', this.role, (err as Error).message);
        }
        more = this.emit(out);
      }
      this.checkClosed();
    } finally {
      this.inService = false;
    }
    this.armTimer();
    return more;
  }

  /** Close without a packet (listener or socket gone). */
  abandon(reason: string): void {
    this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', reason) });
    this.release();
  }

  // -------------------------------------------------------------------------- QuicStreamOwner

  flushStream(stream: QuicStream): boolean {
    if (this.closeInfo || stream.destroyed) return false;
    const pending = stream.pending;
    while (pending.length > 0) {
      const item = pending[0]!;
      let sent: number | null;
      try {
        sent = this.quic.streamSend(stream.id, item.buf, item.fin);
      } catch (err) {
        this.streamSendFailed(stream, err as Error);
        return false;
      }
      const n = sent ?? 0;
      if (n < item.buf.length || (item.buf.length === 0 && sent === null)) {
        item.buf = item.buf.subarray(n);
        this.blocked.add(stream);
        // quiche answers Done (null) both for no credit and for a stream the peer stopped
        // (STOP_SENDING): the next service's capacity check tells them apart, so a stopped
        // stream fails at once instead of waiting for an unrelated packet.
        if (n > 0 || sent === null) this.dirty();
        return false;
      }
      pending.shift();
      if (item.fin) stream.localEnded = true;
    }
    this.blocked.delete(stream);
    this.dirty();
    return true;
  }

  resumeRead(stream: QuicStream): void {
    this.resumed.add(stream);
    this.hooks.markDirty(this);
  }

  streamDestroyed(stream: QuicStream, reset: boolean): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    this.resumed.delete(stream);
    if (reset && !this.closeInfo) {
      for (const direction of [quiche.Shutdown.Write, quiche.Shutdown.Read]) {
        try {
          this.quic.streamShutdown(stream.id, direction, STREAM_RESET_CODE);
        } catch {
          // Already finished or reset in that direction.
        }
      }
    }
    this.hooks.markDirty(this);
  }

  // -------------------------------------------------------------------------- internals

  private dirty(): void {
    if (!this.inService) this.hooks.markDirty(this);
  }

  private deliver(): void {
    const quic = this.quic;
    if (!this.isEstablished) {
      if (!quic.isEstablished()) return;
      if (!this.onEstablished()) return;
    }
    // Streams with bytes (or a FIN or a reset) waiting.
    if (quic.isReadable()) this.readReadable();
    if (this.resumed.size > 0) {
      for (const stream of [...this.resumed]) {
        this.resumed.delete(stream);
        if (!stream.destroyed && !stream.readPaused) this.readStream(stream.id);
      }
    }
    // Datagrams.
    if (quic.dgramRecvQueueLen() > 0) {
      const scratch = scratchBuffer();
      for (let n = 0; n < 100_000; n++) {
        let len: number | null;
        try {
          len = quic.dgramRecv(scratch);
        } catch {
          break;
        }
        if (len === null) break;
        this.counters.datagramsReceived++;
        this.datagramHandler?.(scratch.subarray(0, len));
      }
    }
    // Writers waiting for flow-control credit.
    if (this.blocked.size > 0) {
      for (const stream of [...this.blocked]) {
        let capacity: number;
        try {
          capacity = quic.streamCapacity(stream.id);
        } catch (err) {
          this.streamSendFailed(stream, err as Error);
          continue;
        }
        if (capacity > 0 && this.flushStream(stream)) stream.drained();
      }
    }
    // Opens waiting for the peer's stream limit.
    this.serveOpens();
  }

  /**
   * Reads every stream quiche has bytes, a FIN or a reset for. quiche's `readable()` iterator
   * costs ~10 µs a call in the binding (it builds a JS generator with fresh functions), more
   * than the rest of a small request's binding calls together, so with few streams we ask per
   * stream (`streamReadable`, ~0.1 µs): the ones we hold, then new peer streams in id order
   * from the first unseen one. Whatever that misses (a stream we already dropped, whose late
   * FIN or data quiche still holds) leaves the connection readable: then the iterator runs.
   */
  private readReadable(): void {
    const quic = this.quic;
    if (this.streams.size > SCAN_STREAMS) {
      for (const id of quic.readable()) this.readStream(id);
      return;
    }
    let paused = false;
    for (const stream of this.streams.values()) {
      if (!stream.readPaused && quic.streamReadable(stream.id)) this.readStream(stream.id);
      if (stream.readPaused) paused = true;
    }
    for (let id = (this.peerWatermark << 2) | this.peerBit; quic.streamReadable(id); id = (this.peerWatermark << 2) | this.peerBit) {
      this.readStream(id);
      if (this.streams.get(id)?.readPaused) break;
    }
    // A paused reader stays readable by design; anything else left is a stream we do not hold.
    if (!paused && quic.isReadable()) for (const id of quic.readable()) this.readStream(id);
  }

  private readStream(id: number): void {
    let stream = this.streams.get(id);
    if (!stream) {
      stream = this.adoptPeerStream(id);
      if (!stream) return this.discard(id);
    }
    if (stream.readPaused) return;
    // Past END every byte is read and quiche may have freed the stream (InvalidStreamState
    // would cut what the reader has not taken yet): only a late FIN is left to drop.
    if (stream.remoteEnded) return this.discard(id);
    const scratch = scratchBuffer();
    for (;;) {
      let result: [number, boolean] | null;
      try {
        result = this.quic.streamRecv(id, scratch);
      } catch (err) {
        const code = errorCodeOf(err as Error, 'StreamReset');
        if (code !== undefined) stream.abortedByPeer('reset', code);
        else if (!/Done/.test((err as Error).message)) stream.destroy(err as Error);
        return;
      }
      if (result === null) return;
      const [n, fin] = result;
      if (n > 0) {
        try {
          stream.receive(Buffer.from(scratch.subarray(0, n)));
        } catch (err) {
          stream.destroy(err as Error);
          return;
        }
      }
      if (fin) {
        stream.receiveFin();
        return;
      }
      // A short read took all quiche had in order: asking again would only say Done.
      if (n < scratch.length || stream.readPaused || stream.destroyed) return;
    }
  }

  /** Reads and drops what is left of a stream we are done with (a late FIN, a reset). */
  private discard(id: number): void {
    const scratch = scratchBuffer();
    for (let i = 0; i < 1024; i++) {
      try {
        const result = this.quic.streamRecv(id, scratch);
        if (result === null || result[1]) return;
      } catch {
        return;
      }
    }
  }

  protected tryOpen(): QuicStream | undefined {
    if (!this.isEstablished || this.closeInfo || this.quic.peerStreamsLeftBidi() <= 0) return undefined;
    const id = this.nextLocalId;
    this.nextLocalId += 4;
    return this.openLocal(id); // the preamble: quiche creates the stream and the peer sees it
  }

  private streamSendFailed(stream: QuicStream, err: Error): void {
    const code = errorCodeOf(err, 'StreamStopped');
    if (code !== undefined) stream.abortedByPeer('stopped', code);
    else stream.destroy(new OxyError('OXY_ERR_STREAM_RESET', `QUIC stream ${stream.id}: ${err.message}`, { cause: err }));
  }

  /** Handshake done: verify (client), then release the dialer or tell the listener. */
  private onEstablished(): boolean {
    const quic = this.quic;
    const err = this.checkEdge(Buffer.from(quic.applicationProto()).toString(), () => quic.peerCertChain() ?? [], this.verify);
    if (err) {
      try {
        quic.close(false, quiche.CRYPTO_ERROR_START + 42 /* bad_certificate */, Buffer.from(''));
      } catch {
        // already closing
      }
      this.rejectHandshake(err);
      this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason: err.message, remote: false, error: err });
      return false;
    }
    this.isEstablished = true;
    try {
      this.maxDatagram = quic.dgramMaxWritableLen() ?? 0;
    } catch {
      this.maxDatagram = 0;
    }
    debug('%s established with %s:%d', this.role, this.remoteAddress, this.remotePort);
    this.resolveHandshake();
    if (this.role === 'edge') this.hooks.established(this);
    return true;
  }

  /** Appends quiche's packets to `out`; true when more are waiting. */
  private emit(out: OutgoingDatagram[]): boolean {
    const quic = this.quic;
    const size = quic.maxSendUdpPayloadSize();
    for (let n = 0; n < MAX_PACKETS_PER_SERVICE; n++) {
      const buf = this.hooks.packetBuffer(size);
      let result;
      try {
        result = quic.send(buf);
      } catch (err) {
        debug('%s send: %s', this.role, (err as Error).message);
        return false;
      }
      if (result === null) return false;
      const [length, info] = result;
      this.hooks.packetWritten(length);
      out.push({ data: buf.subarray(0, length), address: info.to.host, port: info.to.port, sourceAddress: this.hooks.sourceFor(info.from.host) });
    }
    return true;
  }

  private checkClosed(): void {
    const quic = this.quic;
    if (!this.closeInfo) {
      const peer = quic.peerError();
      const local = quic.localError();
      if (peer) {
        const reason = Buffer.from(peer.reason).toString('utf8');
        if (peer.isApp) {
          this.finish({ code: peer.errorCode, reason, remote: true });
        } else {
          const what = describeTransportError(peer.errorCode);
          const err = new OxyError('OXY_ERR_TUNNEL_CLOSED', `QUIC peer closed the connection: ${what}${reason ? ` (${reason})` : ''}`);
          this.finish({
            code: peer.errorCode === 0 ? TunnelCloseCode.NO_ERROR : TunnelCloseCode.PROTOCOL_ERROR,
            reason: reason || what,
            remote: true,
            error: err,
          });
        }
      } else if (quic.isTimedOut() || (quic.isClosed() && !local)) {
        // Closed with no error and no timeout: quiche accepted a stateless reset (the edge lost the connection, e.g. it restarted).
        const message =
          !quic.isTimedOut() && this.isEstablished
            ? 'QUIC stateless reset: the peer no longer knows this connection'
            : this.isEstablished
              ? 'QUIC idle timeout: no packet from the peer'
              : 'QUIC handshake timed out';
        this.finish({ code: TunnelCloseCode.TRANSPORT_LOST, reason: message, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', message) });
      } else if (local) {
        const what = describeTransportError(local.errorCode);
        const message = `QUIC connection failed: ${what}`;
        this.finish({ code: TunnelCloseCode.PROTOCOL_ERROR, reason: message, remote: false, error: new OxyError('OXY_ERR_TUNNEL_CLOSED', message) });
      }
    }
    if (quic.isClosed()) this.release();
  }

  protected dialFailure(info: TunnelCloseInfo): QuicDialFailure {
    const peer = this.quic.peerError() ?? this.quic.localError();
    const tls = peer && !peer.isApp && peer.errorCode >= quiche.CRYPTO_ERROR_START && peer.errorCode <= quiche.CRYPTO_ERROR_STOP;
    // no_application_protocol: the edge speaks QUIC, but not our ALPN — a refusal, not a TLS failure.
    const alpn = tls && peer.errorCode === quiche.CRYPTO_ERROR_START + 120;
    return alpn ? 'refused' : tls ? 'tls' : peer || info.remote ? 'refused' : this.quic.isTimedOut() ? 'timeout' : 'closed';
  }

  protected onFinish(): void {
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.blocked.clear();
    this.resumed.clear();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.keepAlive) clearInterval(this.keepAlive);
    this.hooks.released(this);
  }

  private armTimer(): void {
    if (this.released) return;
    const ms = this.quic.timeout();
    if (ms === null) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    const deadline = performance.now() + ms;
    // A deadline that moved later (the idle timer does at every packet) keeps the armed timer:
    // firing early costs one onTimeout() that finds nothing due, re-arming costs a timer-list
    // removal and insert at every service.
    if (this.timer && deadline - this.timerDeadline > -1) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDeadline = deadline;
    this.timer = setTimeout(this.onTimer, ms);
    // Draining connections must not hold the process open.
    if (this.closeInfo) this.timer.unref();
  }
}

// ---------------------------------------------------------------------------- helpers

function scratchBuffer(): Buffer {
  readScratch ??= Buffer.allocUnsafe(READ_CHUNK);
  return readScratch;
}

/** `StreamReset(12)` → 12, for the binding's error messages. */
function errorCodeOf(err: Error, kind: 'StreamReset' | 'StreamStopped'): number | undefined {
  const match = new RegExp(`${kind}\\((\\d{1,16})\\)`).exec(err.message ?? '');
  return match ? Number(match[1]) : undefined;
}
