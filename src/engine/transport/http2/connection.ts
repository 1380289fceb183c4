/**
 * A TunnelConnection over HTTP/2, in reverse as cloudflared does it: the connector dials
 * TLS and is the HTTP/2 *server*; the edge accepted the socket and is the HTTP/2 *client*.
 * Only the edge can open HTTP/2 streams, so:
 *
 *  - edge.openStream()      → an HTTP/2 request `oxy-stream: data`; the connector answers
 *                              200 at once and hands the stream to its onStream handler.
 *  - connector.openStream() → the connector writes a u32 request id on the *reverse-open*
 *                              stream (a request the edge opens once, at start); the edge
 *                              opens `oxy-stream: reverse`, `oxy-reverse-id: <id>`, which
 *                              resolves the connector's promise and goes to the edge's
 *                              onStream handler. One round trip per connector-opened stream.
 *  - datagrams              → records `[u16 length][datagram]` on the *datagrams* stream,
 *                              also opened by the edge at start (supportsDatagrams = true,
 *                              datagramsReliable = true; dropped at the sender when that
 *                              stream's buffer is above DATAGRAM_BUFFER_LIMIT).
 *  - close(code, reason)    → GOAWAY with `code` and the reason as opaque data, then the
 *                              session is destroyed; the peer's `closed` has both.
 *
 * Every edge-opened request, internal or not, goes through one FIFO that holds it while
 * the connector's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
 *
 * Resets: Node sends RST_STREAM(NO_ERROR) for a plain destroy() and reports a peer's CANCEL
 * as a clean close, so a truncated stream could look complete. Each stream's _destroy is
 * wrapped: a local destroy before both sides ended sends RST_STREAM(CANCEL), and a stream
 * closed by the peer with any non-zero code errors with OXY_ERR_STREAM_RESET; streams cut
 * by the connection closing error with OXY_ERR_TUNNEL_CLOSED.
 */
import {
  constants as h2c,
  type ClientHttp2Session,
  type Http2Stream,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { debuglog } from 'node:util';
import { OxyError } from '../../../core/errors.js';
import { TunnelCloseCode } from '../../protocol/codes.js';
import { DatagramRecordParser, encodeDatagramRecord, MAX_STREAM_DATAGRAM } from '../../protocol/datagram.js';
import type { AcceptStreamOptions, OpenStreamOptions, TunnelCloseInfo, TunnelConnection, TunnelConnectionStats, TunnelRole, TunnelStream } from '../types.js';
import { abortedError, StreamInbox, truncateUtf8 } from '../common.js';
import { destroyWhenTcpGone } from '../../native/tcp-info.js';
import { H2_HEADER_REVERSE_ID, H2_HEADER_STREAM, H2_PATH, H2_STREAM_DATA, H2_STREAM_DATAGRAMS, H2_STREAM_REVERSE, H2_STREAM_REVERSE_OPEN } from './settings.js';

const debug = debuglog('oxy:transport:http2');

/** Datagrams are dropped at the sender when the datagram stream holds more than this. */
export const DATAGRAM_BUFFER_LIMIT = 1024 * 1024;
/** Longest close reason sent in GOAWAY. */
const MAX_REASON_BYTES = 1024;

type Session = ClientHttp2Session | ServerHttp2Session;

/** The request head of an edge-opened stream of `kind` (Node copies it; built once for data streams). */
const requestHeaders = (kind: string): Record<string, string> => ({ ':method': 'POST', ':path': H2_PATH, [H2_HEADER_STREAM]: kind });
const DATA_STREAM_HEADERS = requestHeaders(H2_STREAM_DATA);
const OPEN_OPTIONS = { endStream: false } as const;

interface QueuedOpen {
  headers: Record<string, string>;
  resolve: (stream: Http2Stream) => void;
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface PendingReverse {
  resolve: (stream: TunnelStream) => void;
  reject: (err: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A data stream's 200 leaves with its first write (Node's ServerHttp2Stream responds by itself
 * when a write finds no headers sent), so the HEADERS frame shares a TLS write with the answer
 * that follows the dial instead of taking one of its own (per new flow: one write here, one
 * read and wake-up at the edge, which never waits for the 200). OXY_H2_LAZY_RESPOND=0 answers
 * at once, as before.
 */
const LAZY_RESPOND = process.env.OXY_H2_LAZY_RESPOND !== '0';

/** An end() with nothing written must respond first too: nghttp2 cannot end a stream that sent no headers. */
function respondAtFirstWrite(stream: ServerHttp2Stream): void {
  const final = stream._final;
  stream._final = function (this: ServerHttp2Stream, callback: (error?: Error | null) => void): void {
    if (!this.headersSent && !this.destroyed && !this.closed) {
      try {
        this.respond({ ':status': 200 });
      } catch (err) {
        callback(err as Error);
        return;
      }
    }
    final.call(this, callback);
  };
}

/** At most one liveness PING per this many ms while streams keep opening (a busy connection). */
const LIVENESS_PING_EVERY_MS = 100;
/** How often a connection with streams open or a PING unanswered has the kernel asked whether its TCP connection still exists (destroyWhenTcpGone). */
const TRANSPORT_CHECK_MS = 1000;
/** A closed session whose socket has not closed after this long gets its socket destroyed under it. */
const CLOSE_GRACE_MS = 2000;

export class Http2TunnelConnection implements TunnelConnection {
  readonly protocol = 'http2' as const;
  readonly role: TunnelRole;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly supportsDatagrams = true;
  readonly datagramsReliable = true;
  readonly maxDatagramSize = MAX_STREAM_DATAGRAM;
  readonly closed: Promise<TunnelCloseInfo>;

  private readonly session: Session;
  /** The TLS socket under the session (the session may run on a wrapper of it); tests destroy it to lose the transport under a live session. */
  private readonly socket: Socket;
  private resolveClosed!: (info: TunnelCloseInfo) => void;
  private closeInfo: TunnelCloseInfo | undefined;
  private localClose: TunnelCloseInfo | undefined;
  private remoteClose: TunnelCloseInfo | undefined;
  private lastError: Error | undefined;

  private readonly inbox = new StreamInbox();
  private datagramHandler: ((data: Buffer) => void) | undefined;

  // edge (HTTP/2 client) state
  private readonly openQueue: QueuedOpen[] = [];
  private activeRequests = 0;
  // connector (HTTP/2 server) state
  private nextReverseId = 1;
  private readonly pendingReverse = new Map<number, PendingReverse>();
  private readonly reverseIdBacklog: number[] = [];

  private reverseOpenStream: Http2Stream | undefined;
  private datagramStream: Http2Stream | undefined;
  private userStreams = 0;
  private readonly counters = { datagramsSent: 0, datagramsReceived: 0, datagramsDropped: 0 };
  /** When the PING in flight was sent (0: none). */
  private pingSince = 0;
  /** When the peer last answered a PING (a connection starts out trusted). */
  private answeredAt = performance.now();
  /** When the oldest stream opened since the last PING was sent began waiting (0: none). */
  private streamWaitSince = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  private stopTransportCheck: (() => void) | undefined;
  /** The socket's bytesRead at the last look, and when that look found it had grown (0: never). */
  private readMark = 0;
  private heardAt = 0;
  private readonly probeWaiters: ((answered: boolean) => void)[] = [];

  constructor(role: TunnelRole, session: Session, socket: Socket) {
    this.role = role;
    this.session = session;
    this.socket = socket;
    this.localAddress = socket.localAddress ?? '';
    this.localPort = socket.localPort ?? 0;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));

    session.on('error', (err) => {
      debug('%s session error: %s', role, err.message);
      this.lastError ??= err;
    });
    socket.on('error', (err) => {
      this.lastError ??= err;
    });
    session.on('goaway', (code: number, _last: number, opaque?: Buffer) => {
      if (!this.localClose && !this.remoteClose) {
        const reason = opaque && opaque.length > 0 ? opaque.toString('utf8') : '';
        this.remoteClose = { code, reason, remote: true };
        debug('%s received GOAWAY %d %s', role, code, reason);
      }
      // A GOAWAY ends the tunnel connection: no graceful stream completion at this layer
      // (drains happen on the control stream before the close).
      if (!session.destroyed) setImmediate(() => session.destroy());
    });
    session.on('close', () => this.onSessionClose());
    // The session's own TLS socket (not the connector's TCP socket under the addon's relay, which reports resets itself).
    // While streams are open or a PING is unanswered (what a failed write leaves): nodejs/node#61304.
    if (socket instanceof TLSSocket) {
      this.stopTransportCheck = destroyWhenTcpGone(socket, {
        everyMs: TRANSPORT_CHECK_MS,
        busy: () => !this.closeInfo && (this.pingSince !== 0 || this.userStreams > 0),
        onGone: (state) => debug('%s: TCP state %d with work in flight: destroying the socket', this.role, state),
      });
    }

    if (role === 'edge') this.startEdge(session as ClientHttp2Session);
    else this.startConnector(session as ServerHttp2Session);
  }

  get isClosed(): boolean {
    return this.closeInfo !== undefined || this.localClose !== undefined || this.remoteClose !== undefined || this.session.destroyed;
  }

  // -------------------------------------------------------------------------- public API

  openStream(options: OpenStreamOptions = {}): Promise<TunnelStream> {
    if (this.isClosed) return Promise.reject(this.closedError());
    if (options.signal?.aborted) return Promise.reject(abortedError());
    if (this.role === 'edge') {
      this.watchStream();
      // A free stream slot and nothing queued ahead (the usual case): open it now, with no
      // queue entry and no promise chain — this runs once per proxied request.
      if (this.openQueue.length === 0 && this.activeRequests < this.peerStreamLimit()) {
        try {
          return Promise.resolve(this.adoptUserStream(this.openNow(DATA_STREAM_HEADERS)));
        } catch (err) {
          return Promise.reject(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'Could not open an HTTP/2 stream', { cause: err }));
        }
      }
      return this.request(DATA_STREAM_HEADERS, options.signal).then((s) => this.adoptUserStream(s));
    }
    return this.requestReverse(options.signal);
  }

  onStream(handler: (stream: TunnelStream) => void): void {
    this.inbox.onStream(handler);
  }

  acceptStream(options: AcceptStreamOptions = {}): Promise<TunnelStream> {
    return this.inbox.accept(options, () => (this.isClosed ? this.closedError() : undefined));
  }

  sendDatagram(data: Uint8Array): boolean {
    const stream = this.datagramStream;
    if (this.isClosed || !stream || stream.destroyed || data.length > MAX_STREAM_DATAGRAM || stream.writableLength > DATAGRAM_BUFFER_LIMIT) {
      this.counters.datagramsDropped++;
      return false;
    }
    stream.write(encodeDatagramRecord(data));
    this.counters.datagramsSent++;
    return true;
  }

  onDatagram(handler: (data: Buffer) => void): void {
    this.datagramHandler = handler;
  }

  close(code: number = TunnelCloseCode.NO_ERROR, reason = ''): void {
    if (this.localClose || this.closeInfo) return;
    this.localClose = { code, reason, remote: false };
    const session = this.session;
    if (session.destroyed) return;
    this.failPending(this.closedError());
    // On the next turn: close() is often called from a stream's 'error' or 'close' listener,
    // which for a peer's RST_STREAM runs inside nghttp2's stream-close callback; sending from
    // there (GOAWAY, the RST_STREAMs of the streams the session destroys) re-enters nghttp2
    // while it still holds the reset stream's queued DATA, and Node then loops on empty DATA
    // frames for good (seen on both ends once both run on native sockets).
    setImmediate(() => {
      if (session.destroyed) return;
      try {
        session.goaway(code, 0, truncateUtf8(reason, MAX_REASON_BYTES));
      } catch (err) {
        debug('goaway failed: %s', (err as Error).message);
      }
      session.destroy(undefined, code);
      // A session stuck on a write never closes by itself (destroyWhenTcpGone): its socket then goes.
      setTimeout(() => {
        if (!this.closeInfo) this.socket.destroy();
      }, CLOSE_GRACE_MS).unref();
    });
  }

  stats(): TunnelConnectionStats {
    return {
      activeStreams: this.userStreams,
      queuedOpens: this.role === 'edge' ? this.openQueue.length : this.pendingReverse.size,
      ...this.counters,
    };
  }

  activeStreams(): number {
    return this.userStreams;
  }

  probe(): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false);
    const answer = new Promise<boolean>((resolve) => this.probeWaiters.push(resolve));
    this.ping();
    return answer;
  }

  /** Sends a PING unless one is in flight; its answer proves alive every stream opened before it. */
  private ping(): void {
    if (this.pingSince || this.isClosed) return;
    clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
    this.heard();
    const sentAt = performance.now();
    const covered = this.streamWaitSince;
    const sent = this.session.ping((err) => {
      this.pingSince = 0;
      if (!err) {
        this.answeredAt = performance.now();
        // Streams opened after this PING left still wait for the next one.
        if (this.streamWaitSince === covered) this.streamWaitSince = 0;
        else this.ping();
      }
      for (const answered of this.probeWaiters.splice(0)) answered(!err);
    });
    if (sent) this.pingSince = sentAt;
    else for (const answered of this.probeWaiters.splice(0)) answered(false);
  }

  /**
   * A stream is about to wait on the peer: a host that vanished leaves TCP silent for minutes,
   * so a PING follows every new stream (at most one in flight, one per LIVENESS_PING_EVERY_MS),
   * and unansweredMs() counts from the oldest stream it has not yet vouched for.
   */
  private watchStream(): void {
    if (this.streamWaitSince) return;
    this.heard();
    const now = performance.now();
    this.streamWaitSince = now;
    if (this.pingSince || this.pingTimer) return;
    const wait = this.answeredAt + LIVENESS_PING_EVERY_MS - now;
    if (wait <= 0) this.ping();
    else (this.pingTimer = setTimeout(() => this.ping(), wait)).unref();
  }

  /**
   * Counts from the oldest wait, or from the last bytes heard from the peer if they came after
   * it: as any QUIC packet does, bytes arriving prove the peer alive. A PING's answer can wait
   * behind megabytes of DATA on a loaded machine (a 20 MB upload's echo: the connector's 5 s
   * silence detector closed a connection that was receiving all along).
   */
  unansweredMs(): number {
    const since = Math.min(this.pingSince || Infinity, this.streamWaitSince || Infinity);
    if (since === Infinity) return 0;
    this.heard();
    return performance.now() - Math.max(since, this.heardAt);
  }

  /** Notes when bytes from the peer were last seen arriving (at the latest look: the watchdogs look every second or so). */
  private heard(): void {
    const read = this.socket.bytesRead;
    if (read !== this.readMark) {
      this.readMark = read;
      this.heardAt = performance.now();
    }
  }

  // -------------------------------------------------------------------------- edge side

  private startEdge(session: ClientHttp2Session): void {
    session.on('remoteSettings', () => this.pumpOpens());
    this.request(requestHeaders(H2_STREAM_REVERSE_OPEN)).then(
      (stream) => this.attachReverseOpen(stream),
      (err) => debug('edge: reverse-open stream failed: %s', (err as Error).message),
    );
    this.request(requestHeaders(H2_STREAM_DATAGRAMS)).then(
      (stream) => this.attachDatagrams(stream),
      (err) => debug('edge: datagram stream failed: %s', (err as Error).message),
    );
  }

  /** Open an HTTP/2 request, waiting for a concurrency slot. */
  private request(headers: Record<string, string>, signal?: AbortSignal): Promise<Http2Stream> {
    return new Promise((resolve, reject) => {
      const item: QueuedOpen = { headers, resolve, reject, signal };
      if (signal) {
        item.onAbort = () => {
          const i = this.openQueue.indexOf(item);
          if (i >= 0) {
            this.openQueue.splice(i, 1);
            reject(abortedError());
          }
        };
        signal.addEventListener('abort', item.onAbort, { once: true });
      }
      this.openQueue.push(item);
      this.pumpOpens();
    });
  }

  private peerStreamLimit(): number {
    const limit = (this.session as ClientHttp2Session).remoteSettings.maxConcurrentStreams;
    return limit === undefined || limit <= 0 ? 100 : limit;
  }

  private pumpOpens(): void {
    while (this.openQueue.length > 0 && this.activeRequests < this.peerStreamLimit()) {
      if (this.isClosed) return;
      const item = this.openQueue.shift()!;
      if (item.onAbort) item.signal?.removeEventListener('abort', item.onAbort);
      let stream: Http2Stream;
      try {
        stream = this.openNow(item.headers);
      } catch (err) {
        item.reject(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'Could not open an HTTP/2 stream', { cause: err }));
        continue;
      }
      item.resolve(stream);
    }
  }

  /** Opens one request stream in a free slot (the caller checked the limit); throws when the session refuses. */
  private openNow(headers: Record<string, string>): Http2Stream {
    const stream = (this.session as ClientHttp2Session).request(headers, OPEN_OPTIONS);
    this.activeRequests++;
    stream.once('close', this.onRequestClose);
    this.guardStream(stream);
    return stream;
  }

  private readonly onRequestClose = (): void => {
    this.activeRequests--;
    this.pumpOpens();
  };

  private attachReverseOpen(stream: Http2Stream): void {
    // The connector writes u32 request ids; each becomes an edge-opened `reverse` stream.
    let carry: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      let off = 0;
      for (; off + 4 <= buf.length; off += 4) this.openReverse(buf.readUInt32BE(off));
      carry = buf.subarray(off);
    });
    stream.on('error', (err) => debug('edge: reverse-open stream error: %s', err.message));
    this.reverseOpenStream = stream;
  }

  private openReverse(id: number): void {
    this.request({ ...requestHeaders(H2_STREAM_REVERSE), [H2_HEADER_REVERSE_ID]: String(id) }).then(
      (stream) => this.deliver(this.adoptUserStream(stream)),
      (err) => debug('edge: reverse stream %d failed: %s', id, (err as Error).message),
    );
  }

  // -------------------------------------------------------------------------- connector side

  private startConnector(session: ServerHttp2Session): void {
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      this.guardStream(stream);
      const kind = headers[H2_HEADER_STREAM];
      if (kind === H2_STREAM_DATA && LAZY_RESPOND) respondAtFirstWrite(stream);
      else {
        try {
          stream.respond({ ':status': 200 });
        } catch (err) {
          stream.destroy(err as Error);
          return;
        }
      }
      switch (kind) {
        case H2_STREAM_DATA:
          this.deliver(this.adoptUserStream(stream));
          return;
        case H2_STREAM_REVERSE:
          this.onReverseStream(stream, Number(headers[H2_HEADER_REVERSE_ID]));
          return;
        case H2_STREAM_REVERSE_OPEN:
          this.reverseOpenStream = stream;
          stream.on('error', (err) => debug('connector: reverse-open stream error: %s', err.message));
          stream.resume(); // the edge never writes on it
          for (const id of this.reverseIdBacklog.splice(0)) this.writeReverseId(id);
          return;
        case H2_STREAM_DATAGRAMS:
          this.attachDatagrams(stream);
          return;
        default:
          debug('connector: unknown stream kind %s', String(kind));
          stream.close(h2c.NGHTTP2_REFUSED_STREAM);
      }
    });
  }

  private requestReverse(signal?: AbortSignal): Promise<TunnelStream> {
    const id = this.nextReverseId++;
    if (this.nextReverseId > 0xffffffff) this.nextReverseId = 1;
    return new Promise((resolve, reject) => {
      const pending: PendingReverse = { resolve, reject, signal };
      if (signal) {
        pending.onAbort = () => {
          if (this.pendingReverse.delete(id)) reject(abortedError());
        };
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.pendingReverse.set(id, pending);
      if (this.reverseOpenStream) this.writeReverseId(id);
      else this.reverseIdBacklog.push(id);
    });
  }

  private writeReverseId(id: number): void {
    const buf = Buffer.allocUnsafe(4);
    buf.writeUInt32BE(id, 0);
    this.reverseOpenStream!.write(buf);
  }

  private onReverseStream(stream: Http2Stream, id: number): void {
    const pending = this.pendingReverse.get(id);
    if (!pending) {
      // Aborted while the edge was opening it.
      stream.close(h2c.NGHTTP2_CANCEL);
      return;
    }
    this.pendingReverse.delete(id);
    if (pending.onAbort) pending.signal?.removeEventListener('abort', pending.onAbort);
    pending.resolve(this.adoptUserStream(stream));
  }

  // -------------------------------------------------------------------------- shared

  private attachDatagrams(stream: Http2Stream): void {
    const parser = new DatagramRecordParser();
    stream.on('data', (chunk: Buffer) => {
      for (const datagram of parser.push(chunk)) {
        this.counters.datagramsReceived++;
        this.datagramHandler?.(datagram);
      }
    });
    stream.on('error', (err) => debug('%s: datagram stream error: %s', this.role, err.message));
    this.datagramStream = stream;
  }

  private deliver(stream: TunnelStream): void {
    this.inbox.deliver(stream);
  }

  private adoptUserStream(stream: Http2Stream): TunnelStream {
    this.userStreams++;
    stream.once('close', () => this.userStreams--);
    return stream as TunnelStream;
  }

  /** Make resets and connection loss visible as errors on the stream (see file comment). */
  private guardStream(stream: Http2Stream): void {
    // Node ends a stream's writable side with its last DATA frame, and destroys the stream as
    // soon as both END_STREAMs are through, while that write's callback may still wait for
    // the socket (always so on the connector's read-ahead socket, which completes writes on
    // setImmediate): 'close' then came without 'finish', so every response looked cut short
    // (an ERR_STREAM_DESTROYED and a premature-close error per request). A stream that
    // completed cleanly is destroyed once its writes are done.
    const destroy = stream.destroy;
    stream.destroy = function (this: Http2Stream, err?: Error) {
      if (err == null && this.closed && this.rstCode === h2c.NGHTTP2_NO_ERROR && this.writableEnded && !this.writableFinished && !this.destroyed) {
        this.destroy = destroy;
        this.once('finish', () => destroy.call(this));
        return this;
      }
      return destroy.call(this, err);
    };
    const original = stream._destroy;
    let localReset = false;
    stream._destroy = (err: Error | null, callback: (error?: Error | null) => void): void => {
      const finished = stream.readableEnded && stream.writableFinished;
      if (this.isClosed && !finished && !(stream.closed && stream.rstCode === h2c.NGHTTP2_NO_ERROR)) {
        const info = this.closeInfo ?? this.localClose ?? this.remoteClose;
        err = new OxyError('OXY_ERR_TUNNEL_CLOSED', `Tunnel connection closed${info?.reason ? `: ${info.reason}` : ''}`, { cause: err ?? info });
      } else if (!stream.closed) {
        if (!finished) {
          localReset = true;
          stream.close(err ? h2c.NGHTTP2_INTERNAL_ERROR : h2c.NGHTTP2_CANCEL);
        }
      } else if (!localReset && stream.rstCode !== h2c.NGHTTP2_NO_ERROR && !(err instanceof OxyError)) {
        err = new OxyError('OXY_ERR_STREAM_RESET', `Stream reset by peer (HTTP/2 code ${stream.rstCode})`, {
          cause: err ?? undefined,
        });
      }
      original.call(stream, err, callback);
    };
  }

  private onSessionClose(): void {
    clearTimeout(this.pingTimer);
    this.stopTransportCheck?.();
    if (this.closeInfo) return;
    const info: TunnelCloseInfo = this.localClose ??
      this.remoteClose ?? {
        code: TunnelCloseCode.TRANSPORT_LOST,
        reason: this.lastError?.message ?? 'Connection lost',
        remote: false,
        ...(this.lastError ? { error: this.lastError } : {}),
      };
    this.closeInfo = info;
    debug('%s closed: %d %s', this.role, info.code, info.reason);
    this.failPending(this.closedError());
    this.resolveClosed(info);
  }

  private failPending(err: OxyError): void {
    for (const item of this.openQueue.splice(0)) {
      if (item.onAbort) item.signal?.removeEventListener('abort', item.onAbort);
      item.reject(err);
    }
    for (const pending of this.pendingReverse.values()) {
      if (pending.onAbort) pending.signal?.removeEventListener('abort', pending.onAbort);
      pending.reject(err);
    }
    this.pendingReverse.clear();
    this.inbox.fail(err);
  }

  private closedError(): OxyError {
    const info = this.closeInfo ?? this.localClose ?? this.remoteClose;
    return new OxyError('OXY_ERR_TUNNEL_CLOSED', `Tunnel connection closed${info?.reason ? `: ${info.reason}` : ''}`, { cause: info });
  }
}
