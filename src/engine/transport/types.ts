/**
 * The transport-neutral tunnel connection. The edge and the connector are written against
 * this interface only; HTTP/2 (./http2/) and QUIC (./quic/) implement it.
 *
 * Model: one authenticated, encrypted connection between a connector and an edge carrying
 *  - reliable, ordered, bidirectional byte streams that either side may open, with
 *    backpressure and half-close (Node Duplex streams);
 *  - optionally, datagrams (QUIC DATAGRAM; HTTP/2 emulates them on one stream, in order
 *    and reliably — see `datagramsReliable`);
 *  - a close carrying a numeric code and a reason, seen by the peer.
 *
 * Stream semantics every implementation guarantees:
 *  - `end()` sends a clean end of the write side; the peer reads 'end'. The read side stays
 *    open (half-close).
 *  - `destroy()` or `destroy(err)` before both sides ended resets the stream; the peer's
 *    stream errors with code OXY_ERR_STREAM_RESET (pending writes fail, reads error).
 *  - Backpressure: `write()` returns false when the transport's buffer for the stream is
 *    full; 'drain' follows. Flow-control windows are sized by the transport.
 *  - Stream contents are opaque: the protocol layer (../protocol/) writes a stream header
 *    first; the transport never inspects the bytes.
 */
import type { Duplex } from 'node:stream';

export type TunnelProtocol = 'http2' | 'quic';
export type TunnelRole = 'edge' | 'connector';

/** A bidirectional stream of a tunnel connection. */
export interface TunnelStream extends Duplex {
  /** Transport stream id, for logs (HTTP/2 stream id, QUIC stream id). */
  readonly id?: number;
  /**
   * From now on the stream's bytes go to and come from the connected TCP socket `fd` natively,
   * without passing through this Duplex: what the peer sends is still read here, and written to
   * the socket with FdPump.write; what the socket sends goes out as this stream's data (before
   * anything written here afterwards). Undefined when the transport has no such pump (or the
   * stream cannot start one now). The caller keeps its socket's ownership of `fd` (the pump uses
   * a duplicate): close the socket once this returns.
   */
  pumpTo?(fd: number, events: FdPumpEvents): FdPump | undefined;
  /**
   * The edge's side of an `http1` stream: answers (raw HTTP/1 responses) the transport frames and
   * writes to the client's TCP socket `fd` itself, one at a time as `AnswerPump.arm` asks, while the
   * caller keeps reading the socket (the pump writes to a duplicate of its fd). Undefined when the
   * transport has none.
   */
  answerTo?(fd: number, options: AnswerPumpOptions): AnswerPump | undefined;
  /** TCP connects made by the transport, whose sockets `pumpTo` takes without a Node socket (FdPumpEvents.dial). */
  readonly dialer?: NativeDialer;
  /**
   * Writes a few bytes at once where nothing written before waits in the Duplex (no Writable
   * round: its buffering, callback and tick); false when something does, or the stream is
   * corked or ended: write() them. A tcp-flows record of a new flow goes so (OPEN, its early
   * DATA, the ANSWER).
   */
  writeNow?(data: Buffer): boolean;
  /**
   * A `tcp-flows` stream's OPEN records between flows, read by the transport and handed here whole
   * (its reader never sees them), where it pumps the flows (FdPumpEvents.flows) and this is set
   * before the pump is: the stream's next OPEN once a flow is over. It returns whether a flows
   * pump took the new flow before it returned (pumpTo with `atConnect`): then what followed the
   * OPEN is that pump's; false: it comes to the stream's reader, from right after the OPEN.
   * `token`: the transport dialled the flow's destination as it read the OPEN
   * (NativeDialer.admitOpen): that dial is the callee's to take (NativeDialer.adopt) or close,
   * whatever it returns.
   */
  onFlowOpen?: ((payload: Buffer, token?: number) => boolean) | undefined;
}

/** TCP connects made by the transport (the addon's ngtcp2 client): a private flow's dial with no Node socket. */
export interface NativeDialer {
  /**
   * Starts a connect to `addr` (4 or 16 bytes) with TCP_NODELAY and, above 0, keep-alive after
   * `keepAliveMs`; `done(errno)` once it finished (0: connected). Returns its token (> 0), or -errno
   * at once. The socket waits in the transport until pumpTo takes it, take() or close().
   */
  dial(addr: Uint8Array, port: number, keepAliveMs: number, done: (errno: number) => void): number;
  close(token: number): void;
  /** The dial's socket fd, now the caller's (-1: none). */
  take(token: number): number;
  /** A dial the transport made itself (TunnelStream.onFlowOpen's token): `done(errno)` once it finished, as for dial(). */
  adopt?(token: number, done: (errno: number) => void): void;
  /**
   * An OPEN payload the connector admitted, to `addr`:`port`: from now on the transport dials an
   * OPEN of these bytes itself as it reads it (before any JS; onFlowOpen gets the token), while
   * `epoch[0]` still reads what it reads now (the caller adds one whenever what it admits changes).
   */
  admitOpen?(payload: Buffer, addr: Uint8Array, port: number, keepAliveMs: number, epoch: Int32Array): void;
}

export interface AnswerPumpOptions {
  /** Header lines (CRLF-terminated) a kept connection's answer head gets (`Keep-Alive: timeout=…`). */
  keepAlive: string;
  /** Header lines every final answer head gets (a forwarded stream's Proxy-Status), '' for none. */
  extra: string;
  /** An answer is whole and written (read it from `state`); may come after the caller read it there. */
  done(): void;
  /** The answer cannot be framed (or bytes came past its end): the stream must go; `untouched`: nothing of the answer was framed (no head), so the client may get a 502 page instead (`headRequest`: without a body). */
  broken(message: string, untouched: boolean, headRequest: boolean): void;
  /** Writing to the client failed (errno). */
  failed(errno: number): void;
  /** The answer to a request the transport read itself (AnswerPump.read) is whole and written: its status, and the bytes of request and answer. */
  ownDone?(status: number, bytes: number, close: boolean): void;
  /** `count` such answers of one status (none closing the connection), `bytes` of them all: counted, nothing else. */
  ownCount?(status: number, count: number, bytes: number): void;
  /** The transport stopped reading the client (bytes that are the caller's, its EOF or error): call readStop. */
  readBack?(): void;
  /** The transport's reads of a request body (AnswerPump.readBody) stopped, why in BODY_END (native/quic.ts): call readStop. */
  bodyEnd?(outcome: number): void;
}

/** A stream's answers written to a client socket natively (TunnelStream.answerTo). */
export interface AnswerPump {
  /**
   * The stream's next answer goes to the socket natively (to a HEAD request: no body; `close`: the
   * client asked to close). False: it comes through the Duplex as before (the stream is mid-frame,
   * bytes for the Duplex are on their way). Call before the request's bytes are written.
   */
  arm(headRequest: boolean, close: boolean): boolean;
  /** Shared with the transport: ANSWER_STATE slots (native/quic.ts). */
  readonly state: Float64Array;
  /**
   * From now on the transport reads the client socket itself (the caller has stopped its own
   * reads): a plain bodyless request for `host` (`client`: its X-Forwarded-For address) read
   * whole while no answer is in flight goes on the stream and its answer is armed, without the
   * caller (ownDone tells it); anything else stops the reads (readBack). False: not now (the
   * stream has bytes half-read or waiting to be written). Undefined where the transport has none.
   */
  read?(host: string, client: string): boolean;
  /**
   * The transport stops reading the client: returns what it read that the caller must read —
   * first the head of a request in flight, if any (ANSWER_STATE.BACK_HEAD bytes; its answer is
   * then the caller's, as one it armed), then bytes not forwarded.
   */
  readStop(): Buffer;
  /**
   * From now on the transport reads the request body from the client socket itself (the caller
   * wrote the request's records so far and stopped its own reads): `left` bytes, or a chunked
   * body from where the caller's checker stands (`chunkState`, ChunkedBody.handOver), each read
   * on the stream as a BODY record, until the body ends or the framing is refused (bodyEnd tells
   * it; ANSWER_STATE.BODY_DONE says whether it ended whole) or readStop. False: not now.
   */
  readBody?(left: number, chunkState?: number[]): boolean;
  /** Stops the pump and closes its descriptor (bytes not yet written are dropped). */
  close(): void;
}

/** A tunnel stream pumped to and from a TCP socket (TunnelStream.pumpTo). */
export interface FdPump {
  /** Bytes for the socket (`head`: a request starts: its answer is reported). False: wait for onDrain. */
  write(data: Uint8Array, head: boolean): boolean;
  /**
   * Stops the pump and closes its descriptor (unsent bytes for the socket are dropped). Returns
   * the bytes the transport read off the stream and wrote to the socket itself (`records`).
   * `reset`: the socket is reset (RST), not ended: its flow was cut.
   */
  close(reset?: boolean): number;
  /** A plain pump: no more bytes for the socket after those written; its write side is shut once they are out (`shut` follows). */
  end?(): void;
  /** A flows pump: the peer reset the flow (its RESET came before the addon read the records): the socket is reset. */
  reset?(): void;
  /**
   * With `records`: HEAD records of any host (`true`) or of the host field `host` (its bytes, as
   * the record holds them) have their head written to the socket by the transport, without
   * `head()` (`fastAnswer` and `fastHead` tell of them); undefined: every HEAD to `head()` again.
   */
  route?(key: true | Uint8Array | undefined): void;
}

export interface FdPumpEvents {
  /** The socket's first bytes after a head: "HTTP/1.x NNN" (0: not a status line). Comes late, never after the next head. */
  answer(status: number): void;
  /** The socket is done: EOF (errno 0) or a read/write error. Nothing more moves; close the pump. */
  end(errno: number): void;
  /** The bytes for the socket went below the high-water mark. */
  drain(): void;
  /**
   * With `bodyLeft`: an `http1` HEAD record's payload (protocol/http1.ts) that the transport
   * read off the stream whole, instead of the stream's bytes through the Duplex. It does so only
   * from a point where the Duplex and `bodyLeft()` say nothing is half-read (without `records`:
   * between records).
   */
  head?(record: Buffer): void;
  /** BODY bytes of the record being read still to come (0 between records); undefined when a record is half-read otherwise. */
  bodyLeft?(): number | undefined;
  /**
   * With `head`: the transport reads every record off the stream from such a point on, not only
   * whole HEADs: BODY bytes go to the socket without the Duplex (the stream's credit held back
   * while the socket has more than 1 MiB unsent), and it calls `handOver()` when it starts (the
   * record reader forgets its BODY record: the rest goes to the socket). Each head() must be
   * answered before it returns: `write(head, true)` (what followed the HEAD goes on to the
   * socket) or `close()` (the records come through the Duplex again, from a record boundary).
   */
  records?: boolean;
  handOver?(): void;
  /**
   * A private TCP flow's socket: no records, every byte of the stream is the socket's, and each
   * direction half-closes on its own: the socket's EOF is `end(0)` (write the stream's end
   * then), the stream's end is `FdPump.end()` and then `shut()`. Close the pump after both.
   */
  plain?: boolean;
  shut?(): void;
  /**
   * One private TCP flow of a `tcp-flows` stream (protocol/tcp-flows.ts, WIRE.md §8): from a point
   * where the Duplex and `bodyLeft()` (the DATA record's bytes still to come) say nothing is
   * half-read, the transport reads the flow's records (DATA to the socket, END, RESET) and writes
   * the socket's (its bytes as DATA, its EOF as END, an error as RESET); `handOver()` when it
   * starts. `flowDone()`: a terminator went each way: the pump is gone (the transport still
   * flushes and shuts the socket) and the records after it come through the Duplex again.
   * Until the hand-over, what the Duplex reads of the flow goes to `write()`, `end()`, `reset()`.
   */
  flows?: boolean;
  flowDone?(): void;
  /** `count` requests whose heads the transport wrote itself (`FdPump.route`) have their answers' first bytes (status as `answer`). Comes late. */
  fastAnswer?(status: number, count: number): void;
  /** `count` request heads the transport wrote itself (`FdPump.route`) since it last said. Comes late, before their `fastAnswer`. */
  fastStart?(count: number): void;
  /**
   * Before `end()`, when the last request's head was written by the transport: that HEAD
   * record's payload, and whether its answer began (then `fastAnswer` told of it already).
   */
  fastHead?(record: Buffer, answered: boolean): void;
  /** The `fd` given to pumpTo is a NativeDialer token (a finished dial): the pump takes its socket. */
  dial?: boolean;
  /** The `fd` given to pumpTo is an AcceptedTcp token (native/accept.ts, the edge's upgraded socket): the pump takes it. */
  accepted?: boolean;
  /**
   * With `flows` and `accepted`, the edge awaiting the flow's ANSWER: the pump starts only when the
   * transport reads an ANSWER record of exactly these bytes (the OK one) — it takes the socket then
   * and says so with `answered()` (late: with its next batch for JS). Any other record goes to the
   * reader as without this, and the pump never starts: `close()` it then (it returns -2 for a pump
   * that never started).
   */
  atAnswer?: Buffer;
  answered?(): void;
  /**
   * With `atAnswer`: the flow's OPEN record payload, written by the transport as the flow's first
   * record when it takes the pump (no write here: `pumpTo` returning undefined wrote nothing).
   */
  open?: Buffer;
  /**
   * With `atAnswer`: the transport also reads the socket's first chunk and writes it as the flow's
   * DATA (the edge's early data, no JS); its end waits for the pump, its error comes to `earlyError`.
   */
  earlyRead?: boolean;
  earlyError?(errno: number): void;
  /**
   * With `flows` and `dial`, the dial still connecting (its `done` not called yet): the pump takes
   * it now (what comes for the socket meanwhile waits in the pump) and, once the connect
   * succeeded, writes an ANSWER record of these bytes (the OK one) before anything else of the
   * flow. The dial's `done` hears the connect as before (ECANCELED if the pump went first); a
   * failed connect leaves the pump without a socket: JS answers and resets it. A RESET read before
   * the ANSWER comes to the reader (JS answers first).
   */
  atConnect?: Buffer;
}

export interface TunnelCloseInfo {
  /** A TunnelCloseCode (../protocol/codes.ts) or a transport code. */
  code: number;
  reason: string;
  /** True when the peer closed (its code/reason), false when we did or the transport died. */
  remote: boolean;
  /** The underlying failure when the transport broke rather than closed. */
  error?: Error;
}

export interface OpenStreamOptions {
  /** Abort while queued for a concurrency slot. */
  signal?: AbortSignal;
}

export interface AcceptStreamOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface TunnelConnectionStats {
  /** Streams open right now (both directions). */
  activeStreams: number;
  /** openStream() calls waiting for a concurrency slot. */
  queuedOpens: number;
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams dropped on send (buffer full or too large). */
  datagramsDropped: number;
}

export interface TunnelConnection {
  readonly protocol: TunnelProtocol;
  readonly role: TunnelRole;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;

  /** Whether sendDatagram()/onDatagram() work on this connection. */
  readonly supportsDatagrams: boolean;
  /**
   * Its streams' pumpTo takes sockets by token (FdPumpEvents.dial, .accepted: the addon's ngtcp2),
   * so a socket may stay in the addon until then. Absent: false.
   */
  readonly pumpsTokens?: boolean;
  /**
   * True when datagrams travel on a stream (HTTP/2 fallback): in order, never lost in
   * transit, but dropped at the sender when that stream's buffer is full. False for QUIC
   * DATAGRAM frames (may be lost or reordered).
   */
  readonly datagramsReliable: boolean;
  /** Largest datagram sendDatagram() accepts. */
  readonly maxDatagramSize: number;

  /** Resolves once, when the connection is closed; never rejects. */
  readonly closed: Promise<TunnelCloseInfo>;
  readonly isClosed: boolean;

  /**
   * Open a stream toward the peer. Waits (queued, in order) while the peer's concurrent
   * stream limit is reached. Rejects with OXY_ERR_TUNNEL_CLOSED when the connection closes
   * and OXY_ERR_ABORTED when `signal` aborts.
   */
  openStream(options?: OpenStreamOptions): Promise<TunnelStream>;

  /**
   * Set the handler of streams the peer opens. Streams that arrived before a handler was
   * set are delivered to it at once, in order. Replaces any previous handler.
   */
  onStream(handler: (stream: TunnelStream) => void): void;

  /** The next stream the peer opens, when no onStream handler is set (e.g. the control stream). */
  acceptStream(options?: AcceptStreamOptions): Promise<TunnelStream>;

  /**
   * Send one datagram. Returns false when it was dropped (too large, buffer full, closed).
   * Throws OXY_ERR_TUNNEL_DATAGRAMS_UNSUPPORTED when `supportsDatagrams` is false.
   */
  sendDatagram(data: Uint8Array): boolean;

  /** Set the handler of received datagrams (a view; copy to keep). */
  onDatagram(handler: (data: Buffer) => void): void;

  /**
   * Close now: streams are reset and the peer sees `code` and `reason` in its `closed`.
   * Idempotent; the first call wins.
   */
  close(code?: number, reason?: string): void;

  stats(): TunnelConnectionStats;

  /** stats().activeStreams without building the stats (read per new stream by the edge's pick). */
  activeStreams(): number;

  /**
   * Liveness: asks the peer for an answer now (a QUIC or HTTP/2 PING); resolves true once the
   * peer answered, false if the connection closed first. A dead peer says nothing (a
   * SIGKILLed connector over QUIC), so only a missing answer shows it.
   */
  probe(): Promise<boolean>;

  /**
   * How long a probe, or a stream this side opened, has waited without any packet from the
   * peer (ms); 0 when nothing waits. A live peer answers within a round trip.
   */
  unansweredMs(): number;
}
