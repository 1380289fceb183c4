/**
 * The public listener's fast path (no hooks, no PROXY headers): a keep-alive HTTP/1.1 client
 * connection rides one `http1` tunnel stream (protocol/http1.ts, WIRE.md §7) instead of one
 * stream per request. Each request head is scanned for what routing and framing need (Host,
 * Content-Length, Transfer-Encoding, Connection; Expect: 100-continue is answered at once, as
 * Node's server answers it) and sent whole as one record; the answer's
 * bytes go to the client as they come, the edge finding only where each response ends (for
 * the request counters, traffic and keep-alive); a body follows as it comes — a chunked one
 * unchanged, its framing checked on the way (ChunkedBody), so only bytes every parser reads
 * alike reach the origin. Anything else — a head not whole in what the client sent, an upgrade,
 * Expect, HTTP/1.0 or HTTP/2, odd bytes, chunk framing beyond the plainest in what came with
 * the head, a host with no connector that serves http1 streams (or chunked bodies on them), or
 * no route at all (the error pages) — hands the connection to Node's HTTP server and the
 * per-request path, with every byte not yet answered, once the answers in flight are written.
 * Odd framing later in a chunked body (the request is on its way) is answered as Node's
 * parser answers it: 400 and close.
 *
 * Kept from the per-request path: X-Forwarded-For/-Proto, hop-by-hop headers dropped, the
 * request counter and traffic per request, 502/504 pages with Proxy-Status, a forwarded answer's
 * Proxy-Status naming the edge that served it (the stream's, set once per stream), timeouts (head,
 * body, idle, keep-alive, the connector's answer), and a request its connection lost before
 * any answer is sent again when all of it is in hand: always when the connector ended the
 * stream without reading it, and for bodyless idempotent ones when the connection died or went
 * silent and a sibling answers a probe (as #watchedResponseHead does per request).
 */
import type { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { STATUS_CODES } from 'node:http';
import type { Counter, Gauge } from 'prom-client';
import type { Logger } from '../observe/log.js';
import { bodyRecordHeader, CHUNKED_BODY, ChunkedBody, encodeHeadRecord, ResponseReader, scanRequest, type FastRequest } from '../protocol/http1.js';
import { encodeRequestHeader } from '../protocol/stream-header.js';
import { errorPage, nextHopStatus, type ProxyErrorType } from '../protocol/proxy-status.js';
import { servedVia } from './forwarding.js';
import { closeAfterAnswer } from '../util/linger.js';
import type { AnswerPump, TunnelStream } from '../transport/types.js';
import { ANSWER_STATE, BODY_END, socketFd } from '../native/index.js';
import { LIVENESS_MS, type LiveConnection, type TunnelRegistry } from './registry.js';
import type { HttpTimeouts } from '../util/http-server.js';
import type { StoreView } from './store-view.js';
import type { TrafficRecorder } from './traffic.js';

export interface FastPathOptions {
  view: StoreView;
  registry: TunnelRegistry;
  log: Logger;
  requests?: Counter<'status'>;
  /** Request body bytes held while their tunnel streams open (each request's at most OPENING_LIMIT and one read). */
  opening?: Gauge;
  defaultTunnel?: string;
  responseTimeoutMs: number;
  timeouts: HttpTimeouts;
  traffic?: TrafficRecorder;
  /** Gives a connection to Node's HTTP server (its unread bytes are back on the socket). */
  handOff: (socket: Socket) => void;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const MAX_SENDS = 3;
const WATCH_EVERY_MS = 100;
/** Bytes a client may send ahead (pipelined) while an answer is in flight before we stop reading. */
const READ_AHEAD = 64 * 1024;
/** Bytes a client socket may hold (corked or unsent) before its tunnel stream pauses, and the other way round. */
const CORKED_LIMIT = 1024 * 1024;
/**
 * Body bytes a request may queue while its stream opens (a connection at its stream limit, a
 * peer edge still being dialed) before the client is not read until the stream takes them.
 */
export const OPENING_LIMIT = 1024 * 1024;
const STREAM_HEADER = encodeRequestHeader({ kind: 'http1', destination: '', metadata: [] });
const TIMEOUT_408 = Buffer.from('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n', 'latin1');
const CONTINUE_100 = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
/** What Node's server answers a request its parser refuses. */
const BAD_REQUEST_400 = Buffer.from('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n', 'latin1');

const ignore = (): void => undefined;
const debug = debuglog('oxy:edge:http1');

/**
 * Answers written to the client by the transport itself where it can (the ngtcp2 edge's answer
 * pump, TunnelStream.answerTo); `OXY_EDGE_PUMP=0` keeps every answer in JS (A/B).
 */
const EDGE_PUMP = process.env.OXY_EDGE_PUMP !== '0';
/**
 * Between requests the transport reads the client socket itself where it can (AnswerPump.read):
 * plain bodyless requests for the host the stream serves go on without JS; `OXY_EDGE_READS=0`
 * keeps every read in JS (A/B).
 */
const EDGE_READS = EDGE_PUMP && process.env.OXY_EDGE_READS !== '0';
/**
 * A request body (Content-Length or chunked) that follows its records on a pumped stream is read
 * by the transport too (AnswerPump.readBody: BODY records straight from the client's socket, the
 * chunk framing checked there as ChunkedBody checks it); `OXY_EDGE_BODY=0` keeps bodies in JS (A/B).
 */
const EDGE_BODY = EDGE_PUMP && process.env.OXY_EDGE_BODY !== '0';
/** The clock of ANSWER_STATE.OWN_AT / ACTIVE (ms, monotonic). */
const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
/** A client the transport gave back this many times in a row without forwarding anything stays read by JS (each try costs a hand-over). */
const MAX_READ_MISSES = 3;

interface Tunnel {
  stream: TunnelStream;
  live: LiveConnection;
  drained: () => void;
  /** `Proxy-Status` naming the edge that serves a forwarded stream (the one it went through), else ''. */
  proxyStatus: string;
  /** The transport writes answers to the client itself (armed per request). */
  pump?: AnswerPump;
  /** Pumped answers seen whole (ANSWER_STATE.DONE read so far). */
  seen: number;
  /** Pumped answers armed, and bytes written when the idle timeout last looked. */
  armed: number;
  idleMark: number;
  /** The host of the last request written on the stream: the one the transport may forward itself. */
  host?: string;
  /** The transport reads the client socket (AnswerPump.read), not JS. */
  reading: boolean;
  /** Times in a row the transport gave the client back without forwarding a request (a client it cannot serve). */
  misses: number;
  /** ANSWER_STATE.OWN when its reads started. */
  ownMark: number;
  /** Requests it forwarded that JS took back in flight (#adopt): they count in OWN, their answers' ends in DONE, never in OWN_DONE. */
  adopted: number;
  /** The transport reads the request body in flight from the client (AnswerPump.readBody), not JS. */
  body: boolean;
}

interface SocketHandle {
  readStart?(): number;
  readStop?(): number;
}

interface InFlight {
  fr: FastRequest;
  /** The request's records so far (all of it once `bodyLeft` is 0): what a resend sends again. */
  records: Buffer[];
  /** The request's bytes as the client sent them (those in hand): what the per-request path reads after a fallback. */
  raw: Buffer;
  /** `raw` is the whole request (no body bytes came after the head's read): only then can it go to the per-request path. */
  rawWhole: boolean;
  /** Body bytes the client has still to send (they go on as BODY records as they come); Infinity while a chunked body has not ended. */
  bodyLeft: number;
  /** A chunked body's framing, checked as it comes. */
  chunked?: ChunkedBody;
  /** The records went on a stream: later body bytes are written straight to it. */
  written: boolean;
  /** Body bytes in `records` no stream has had yet (OPENING_LIMIT bounds them). */
  queued: number;
  /** Body bytes went straight to a stream, so `records` is not the whole request: it cannot be sent again. */
  streamed: boolean;
  /** Bounds the body's arrival (the request timeout, as Node's server has it). */
  bodyTimer?: NodeJS.Timeout;
  /** The transport's reads of the body stopped before its end (the stream went, the answer came): the rest is not read as body, and the connection closes after the answer. */
  bodyCut?: boolean;
  reader: ResponseReader;
  /** The transport writes this answer to the client (the tunnel's pump is armed for it). */
  native: boolean;
  answered: boolean;
  sends: number;
  mark: number;
  live: LiveConnection;
  timer?: NodeJS.Timeout;
  watch?: NodeJS.Timeout;
}

export class Http1FastPath {
  readonly #sockets = new Set<Socket>();
  /** Connections whose client the transport reads: watched for answers that do not come, released when routes change. */
  readonly #reads = new Set<FastConnection>();
  #sweep: NodeJS.Timeout | undefined;
  readonly #reload = (): void => {
    for (const c of this.#reads) c.readInJs();
  };

  constructor(private readonly o: FastPathOptions) {
    if (EDGE_READS) o.view.on('reload', this.#reload);
  }

  accept(socket: Socket): void {
    new FastConnection(socket, this.o, this.#sockets, this.#reads, this.#watchReads);
  }

  /** One timer for every connection the transport reads (a request it forwarded may need the liveness watch). */
  readonly #watchReads = (): void => {
    this.#sweep ??= setInterval(() => {
      const now = nowMs();
      for (const c of this.#reads) c.sweep(now);
      if (this.#reads.size === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
      }
    }, WATCH_EVERY_MS).unref();
  };

  /** Ends every connection still on the fast path (the listener is closing). */
  close(): void {
    this.o.view.off('reload', this.#reload);
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const s of this.#sockets) s.destroy();
  }
}

const socketBytes = (s: Socket): number => s.bytesRead + s.bytesWritten;
/** Bytes the transport wrote to and read from the client. */
const pumped = (t: Tunnel | undefined): number => (t?.pump ? t.pump.state[ANSWER_STATE.WRITTEN] + t.pump.state[ANSWER_STATE.READ] : 0);

class FastConnection {
  #buf: Buffer | undefined;
  #tunnel: Tunnel | undefined;
  #req: InFlight | undefined;
  #gone = false;
  #clientEnded = false;
  #handedOff = false;
  #corked = false;
  /** Closing after an answer (#closeAfterAnswer): nothing the client sends from here is read as a request. */
  #closing = false;
  /** Bytes the pumps of streams this connection dropped wrote to the client. */
  #pumped = 0;
  readonly #uncork = (): void => {
    this.#corked = false;
    this.socket.uncork();
  };
  /** What Node's server says on a kept connection: its keep-alive timeout, in whole seconds. */
  readonly keepAlive: string;
  /** The client's address (X-Forwarded-For), read once. */
  readonly client: string;

  constructor(
    private readonly socket: Socket,
    private readonly o: FastPathOptions,
    private readonly sockets: Set<Socket>,
    private readonly reads: Set<FastConnection>,
    private readonly watchReads: () => void,
  ) {
    this.keepAlive = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(o.timeouts.keepAliveMs / 1000)}\r\n`;
    this.client = socket.remoteAddress ?? '';
    sockets.add(socket);
    socket.on('error', ignore);
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('timeout', this.#onTimeout);
    socket.once('close', this.#onClose);
    socket.setTimeout(o.timeouts.headersMs);
  }

  readonly #onData = (data: Buffer): void => {
    let chunk = data;
    // A pumped answer may be whole already (its record rides a later batch): the client's next request says so.
    if (this.#req?.native) this.#pumpDone(this.#tunnel);
    const req = this.#req;
    if (req && req.bodyLeft > 0) {
      // Where a cut body stood is unknown here: nothing after it is a request.
      if (req.bodyCut) return;
      let n: number;
      if (req.chunked) {
        try {
          n = req.chunked.feed(chunk);
        } catch (err) {
          return this.#endBody(req, BAD_REQUEST_400, err as Error);
        }
        if (req.chunked.done) req.bodyLeft = 0;
      } else {
        n = Math.min(req.bodyLeft, chunk.length);
        req.bodyLeft -= n;
      }
      this.#body(req, n === chunk.length ? chunk : chunk.subarray(0, n));
      if (n === chunk.length) return this.#readBody(req);
      chunk = chunk.subarray(n);
    }
    this.#buf = this.#buf ? Buffer.concat([this.#buf, chunk]) : chunk;
    if (!this.#req) this.#next();
    else {
      this.#urgent();
      if (this.#buf.length > READ_AHEAD) this.socket.pause();
    }
  };

  /** Bytes wait behind the pumped answer in flight: its end must come at once, not with the next batch. */
  #urgent(): void {
    const pump = this.#req?.native ? this.#tunnel?.pump : undefined;
    if (pump) pump.state[ANSWER_STATE.URGENT] = 1;
  }

  /** The client's FIN is in with nothing after the request in flight: the pump ends the connection in the turn it writes that answer's last byte (as #finished would a turn later). */
  #endsAfter(t: Tunnel | undefined): void {
    if (this.#clientEnded && !this.#buf && t?.pump) t.pump.state[ANSWER_STATE.ENDED] = 1;
  }

  /** Bytes read from and written to the client, the pumps' included. */
  #bytes(): number {
    return socketBytes(this.socket) + this.#pumped + pumped(this.#tunnel);
  }

  readonly #onEnd = (): void => {
    this.#clientEnded = true;
    this.#urgent();
    this.#endsAfter(this.#tunnel);
    // Unread bytes of a client that half-closed cannot go back on its socket: Node's server would refuse them too.
    if (!this.#req) this.socket.end();
    // A body cut by the client's FIN never ends: the origin must see the request aborted now, not at the request timeout.
    else if (this.#req.bodyLeft > 0) {
      this.#dropTunnel(true);
      this.socket.destroy();
    }
  };

  readonly #onTimeout = (): void => {
    const t = this.#tunnel;
    // Node's timer does not see the transport's reads either: between requests, the keep-alive
    // timeout counts from its last answer — also once JS reads the client again (a take-back
    // between requests leaves the timer where the transport's last answer put it); a request it
    // forwarded becomes ours first.
    const state = t?.pump?.state;
    if (t && state && (t.reading || !this.#req)) {
      if (this.#ownInFlight()) {
        this.#takeBack(t);
        // A request it forwarded began after this timer was set: ours now, with a request's idle timeout from here.
        if (this.#req) return;
        // None was (its answer is whole after all): between requests, as below — an idle client is never kept without a timer.
      }
      const left = this.o.timeouts.keepAliveMs - (nowMs() - state[ANSWER_STATE.ACTIVE]);
      if (left > 1) return void this.socket.setTimeout(left);
      if (t.reading) this.#takeBack(t);
    }
    // Node's timer does not see the pump's writes or the transport's body reads: bytes still moving keep the connection.
    if ((this.#req?.native || t?.body) && t && pumped(t) !== t.idleMark) {
      t.idleMark = pumped(t);
      this.socket.setTimeout(this.o.timeouts.idleMs);
      return;
    }
    // Before any request: as Node's headers timeout (408); between requests: keep-alive; in one: idle.
    if (!this.#req && socketBytes(this.socket) === 0) this.socket.end(TIMEOUT_408);
    this.#dropTunnel(this.#req !== undefined);
    this.socket.destroy();
  };

  readonly #onClose = (): void => {
    this.#gone = true;
    this.sockets.delete(this.socket);
    const req = this.#req;
    if (req) this.#retire(req);
    // A request the transport forwarded and has not answered is aborted too.
    this.#dropTunnel(req !== undefined || this.#ownInFlight());
  };

  /** The transport forwarded a request it read and its answer is not whole yet (those JS took back count apart: their ends never reach OWN_DONE). */
  #ownInFlight(): boolean {
    const t = this.#tunnel;
    return t?.reading === true && t.pump!.state[ANSWER_STATE.OWN] > t.pump!.state[ANSWER_STATE.OWN_DONE] + t.adopted;
  }

  /** Between requests, with nothing of ours pending: the transport reads the client until something needs JS. */
  #readNatively(): void {
    const t = this.#tunnel;
    if (!EDGE_READS || !t?.pump?.read || t.reading || t.host === undefined || t.misses >= MAX_READ_MISSES || this.#req || this.#buf) return;
    if (this.#gone || this.#handedOff || this.#clientEnded || this.#corked || t.live.draining) return;
    const s = this.socket;
    const handle = (s as unknown as { _handle?: SocketHandle })._handle;
    if (!handle?.readStop || !handle.readStart || s.readableLength > 0 || s.isPaused() || s.writableLength > 0) return;
    // JS's handle stops first (Node's Readable still waits for its read: nothing restarts it meanwhile).
    handle.readStop();
    if (!t.pump.read(t.host, this.client)) {
      handle.readStart();
      return;
    }
    t.reading = true;
    t.ownMark = t.pump.state[ANSWER_STATE.OWN];
    debug('client of stream %d read by the transport', t.stream.id);
    this.reads.add(this);
    this.watchReads();
  }

  /**
   * The transport reads no more and JS reads the client again: a request it forwarded and has not
   * answered becomes ours (as one we armed), the bytes it read after are read as they came.
   */
  #takeBack(t: Tunnel): void {
    if (!t.reading) return;
    t.reading = false;
    this.reads.delete(this);
    const pump = t.pump!;
    const back = pump.readStop();
    const head = pump.state[ANSWER_STATE.BACK_HEAD];
    const rest = back.subarray(head);
    t.misses = pump.state[ANSWER_STATE.OWN] > t.ownMark ? 0 : t.misses + 1;
    if (head > 0) t.adopted++;
    if (this.#gone) return;
    if (head > 0) this.#adopt(t, back.subarray(0, head), rest.length);
    if (!this.#handedOff) (this.socket as unknown as { _handle?: SocketHandle })._handle?.readStart?.();
    if (rest.length === 0) return;
    this.#buf = this.#buf ? Buffer.concat([this.#buf, rest]) : rest;
    if (this.#req) this.#urgent();
    // Not from inside the caller (a release, a timeout): the next turn reads them, or Node's next read does with its bytes.
    else setImmediate(() => this.#next());
  }

  /** The request's body goes on from the client's socket without JS, if the transport can take it from here. */
  #readBody(req: InFlight): void {
    const t = this.#tunnel;
    if (!EDGE_BODY || !t?.pump?.readBody || t.body || t.reading || req !== this.#req || !req.written || req.bodyLeft === 0 || req.bodyCut) return;
    if (this.#gone || this.#handedOff || this.#clientEnded || this.#buf) return;
    const s = this.socket;
    const handle = (s as unknown as { _handle?: SocketHandle })._handle;
    if (!handle?.readStop || !handle.readStart || s.readableLength > 0 || s.isPaused()) return;
    const chunkState = req.chunked?.handOver();
    if (req.chunked && !chunkState) return;
    handle.readStop();
    if (!t.pump.readBody(req.chunked ? 0 : req.bodyLeft, chunkState)) {
      handle.readStart();
      return;
    }
    t.body = true;
    req.rawWhole = false;
    req.streamed = true;
    t.idleMark = pumped(t);
    debug('request body on stream %d read by the transport', t.stream.id);
  }

  /** The transport's body reads stop (the body ended, or they were cut): JS reads the client again, the bytes after a whole body first. */
  #bodyBack(t: Tunnel): void {
    if (!t.body) return;
    t.body = false;
    const pump = t.pump!;
    const back = pump.readStop();
    const whole = pump.state[ANSWER_STATE.BODY_DONE] === 1;
    const req = this.#req;
    if (req && req.bodyLeft > 0) {
      if (whole) {
        req.bodyLeft = 0;
        this.#bodyEnded(req);
      } else req.bodyCut = true;
    }
    if (this.#gone) return;
    if (!this.#handedOff) (this.socket as unknown as { _handle?: SocketHandle })._handle?.readStart?.();
    if (!whole || back.length === 0) return;
    this.#buf = this.#buf ? Buffer.concat([this.#buf, back]) : back;
    if (this.#req) {
      this.#urgent();
      if (this.#buf.length > READ_AHEAD) this.socket.pause();
    } else setImmediate(() => this.#next());
  }

  /** The transport's body reads stopped by themselves. */
  #bodyEnd(t: Tunnel, outcome: number): void {
    const req = this.#req;
    this.#bodyBack(t);
    if (!req || this.#gone) return;
    if (outcome === BODY_END.REFUSED) return this.#endBody(req, BAD_REQUEST_400, new Error('chunk framing the fast path does not take'));
    // The client's FIN (or an error) mid-body: as #onEnd, the origin sees the request aborted now.
    if (outcome === BODY_END.CLIENT) {
      this.#clientEnded = true;
      this.#dropTunnel(true);
      this.socket.destroy();
    }
    // BODY_END.STREAM: the stream's own end or reset says what happens to the request.
  }

  /** A request the transport read and forwarded, in flight: ours from here, as if we had sent it. */
  #adopt(t: Tunnel, raw: Buffer, after: number): void {
    // It forwards only what scanRequest reads alike (test/unit/protocol/http1-request.test.ts).
    const fr = scanRequest(raw, this.client);
    if (!fr) return void this.#broken(new Error('a request the transport forwarded does not scan'));
    const state = t.pump!.state;
    const req: InFlight = {
      fr,
      records: [encodeHeadRecord(fr)],
      raw,
      rawWhole: true,
      bodyLeft: 0,
      written: true,
      queued: 0,
      streamed: false,
      reader: new ResponseReader(fr.method === 'HEAD', fr.close, this.keepAlive),
      native: true,
      answered: false,
      sends: 1,
      mark: this.o.traffic ? this.#bytes() - raw.length - after - (state[ANSWER_STATE.WRITTEN] - state[ANSWER_STATE.OWN_MARK]) : 0,
      live: t.live,
    };
    req.reader.extra = t.proxyStatus;
    this.#req = req;
    t.idleMark = pumped(t);
    this.socket.setTimeout(this.o.timeouts.idleMs);
    this.#watch(req, nowMs() - state[ANSWER_STATE.OWN_AT]);
    debug('request on stream %d the transport forwarded taken back in flight', t.stream.id);
  }

  /** Routes may have changed (the view reloaded): JS reads the client again, and routes its next request. */
  readInJs(): void {
    if (this.#tunnel) this.#takeBack(this.#tunnel);
  }

  /** A request the transport forwarded has had no answer for LIVENESS_MS: the liveness watch and the answer deadline are ours. */
  sweep(now: number): void {
    const t = this.#tunnel;
    if (!t?.reading) return void this.reads.delete(this);
    const state = t.pump!.state;
    if (!this.#ownInFlight() || state[ANSWER_STATE.STARTED] >= t.armed + state[ANSWER_STATE.OWN]) return;
    if (now - state[ANSWER_STATE.OWN_AT] >= Math.min(LIVENESS_MS, this.o.responseTimeoutMs)) this.#takeBack(t);
  }

  /** `count` answers of `status` to requests the transport read, `bytes` of them all: counted as #finished counts ours. */
  #countOwn(t: Tunnel, status: number, bytes: number, count: number): void {
    this.o.requests?.inc({ status: String(status) }, count);
    this.o.traffic?.http(t.host ?? '', bytes, count);
  }

  /** The answer to a request the transport read is whole: counted as #finished counts ours. */
  #ownDone(t: Tunnel, status: number, bytes: number, close: boolean): void {
    this.#countOwn(t, status, bytes, 1);
    if (!close || t !== this.#tunnel) return;
    // The origin closes after it: so does the connection (the transport stopped reading).
    this.#takeBack(t);
    this.#closeAfterAnswer();
  }

  /** Starts the next request in the buffer, or hands the connection over. */
  #next(): void {
    const buf = this.#buf;
    if (!buf || this.#req || this.#gone || this.#handedOff || this.#closing) return;
    const fr = scanRequest(buf, this.client);
    if (!fr) return this.#handOff();
    const isChunked = fr.bodyLength === CHUNKED_BODY;
    const live = this.#route(fr.host, isChunked);
    if (!live) return this.#handOff();
    let end = Math.min(buf.length, fr.size + fr.bodyLength);
    let chunked: ChunkedBody | undefined;
    if (isChunked) {
      chunked = new ChunkedBody();
      try {
        // Framing the fast path does not take, seen before anything went: Node's parser judges it.
        end = fr.size + chunked.feed(buf.subarray(fr.size));
      } catch {
        return this.#handOff();
      }
    }
    this.#buf = buf.length > end ? buf.subarray(end) : undefined;
    const records = [encodeHeadRecord(fr)];
    if (end > fr.size) records.push(bodyRecordHeader(end - fr.size), buf.subarray(fr.size, end));
    const req: InFlight = {
      fr,
      records,
      raw: buf.subarray(0, end),
      rawWhole: true,
      bodyLeft: chunked ? (chunked.done ? 0 : Infinity) : fr.size + fr.bodyLength - end,
      chunked,
      written: false,
      queued: 0,
      streamed: false,
      reader: new ResponseReader(fr.method === 'HEAD', fr.close, this.keepAlive),
      native: false,
      answered: false,
      sends: 0,
      mark: this.o.traffic ? this.#bytes() - (this.#buf?.length ?? 0) : 0,
      live,
    };
    this.#req = req;
    this.#queue(req, end - fr.size);
    // As Node's server: go on at once (the origin never sees the Expect; undici on the per-request path refuses it).
    if (fr.expectContinue && req.bodyLeft > 0) this.socket.write(CONTINUE_100);
    this.socket.setTimeout(this.o.timeouts.idleMs);
    if (req.bodyLeft > 0)
      req.bodyTimer = setTimeout(() => {
        // A body that drips past the request timeout (slowloris): as Node's server, 408 and close.
        if (this.#req === req && req.bodyLeft > 0) this.#endBody(req, TIMEOUT_408);
      }, this.o.timeouts.requestMs);
    this.#send(req, live);
  }

  /**
   * A body that cannot go on (too slow, or framing the fast path does not take): Node's answer,
   * the stream is reset (the origin sees the request aborted), and the connection closes after
   * the answer as after any other (the client still sending reads it, not a reset). An answer
   * already begun is cut: the connection goes.
   */
  #endBody(req: InFlight, answer: Buffer, err?: Error): void {
    if (err) this.o.log.debug({ err, host: req.fr.host }, 'Chunked request body refused');
    if (this.#answered(req)) {
      this.#dropTunnel(true);
      return void this.socket.destroy();
    }
    this.#retire(req);
    this.#req = undefined;
    this.socket.write(answer);
    this.#closeAfterAnswer(true);
  }

  /** Body bytes that came after the head: one more BODY record, on the stream or kept until it opens. */
  #body(req: InFlight, bytes: Buffer): void {
    req.rawWhole = false;
    if (req.bodyLeft === 0) this.#bodyEnded(req);
    const header = bodyRecordHeader(bytes.length);
    const t = this.#tunnel;
    if (!req.written || !t) {
      req.records.push(header, bytes);
      this.#queue(req, bytes.length);
      return;
    }
    req.streamed = true;
    // One writev for the record's header and bytes.
    t.stream.cork();
    t.stream.write(header);
    t.stream.write(bytes);
    t.stream.uncork();
    // The tunnel is slower than the client: stop reading the client until it drains. Not at the
    // stream's high-water mark (16 KiB: every 64 KiB read would stop and restart the client's reads).
    if (t.stream.writableLength > CORKED_LIMIT) {
      this.socket.pause();
      t.stream.once('drain', () => this.socket.resume());
    }
  }

  /** The connection that serves `host` with http1 streams (and chunked bodies on them when asked): the stream's own while it is usable, else the registry's pick. */
  #route(host: string, chunked: boolean): LiveConnection | undefined {
    const tunnelId = this.o.view.tunnelForHost(host) ?? this.o.defaultTunnel;
    if (!tunnelId) return undefined;
    const t = this.#tunnel;
    let live = t?.live;
    if (!live || live.tunnelId !== tunnelId || live.draining || live.conn.isClosed) live = this.o.registry.pick(tunnelId);
    return live?.http1 && (!chunked || live.http1Chunked) ? live : undefined;
  }

  #send(req: InFlight, live: LiveConnection): void {
    req.sends++;
    req.live = live;
    req.answered = false;
    req.native = false;
    const t = this.#tunnel;
    if (t && t.live === live) {
      this.#write(req, t);
      return;
    }
    this.#dropTunnel(false);
    live.conn.openStream().then(
      (stream) => {
        if (this.#gone || this.#req !== req) {
          stream.on('error', ignore);
          stream.destroy();
          return;
        }
        const tunnel = this.#attach(stream, live);
        stream.write(STREAM_HEADER);
        this.#write(req, tunnel);
      },
      (err: Error) => this.#lost(req, err),
    );
  }

  #write(req: InFlight, t: Tunnel): void {
    req.written = true;
    t.host = req.fr.host;
    req.reader.extra = t.proxyStatus;
    // The pump writes this answer if nothing of ours waits on the socket before it.
    req.native = t.pump !== undefined && !this.#corked && this.socket.writableLength === 0 && t.pump.arm(req.fr.method === 'HEAD', req.fr.close);
    if (req.native) {
      t.armed++;
      t.idleMark = pumped(t);
      // Pipelined requests wait behind it, or the transport may read the client once it is whole: its end must come at once.
      if (this.#buf || (t.pump!.read && t.misses < MAX_READ_MISSES && !req.fr.close)) t.pump!.state[ANSWER_STATE.URGENT] = 1;
      this.#endsAfter(t);
    }
    for (const r of req.records) t.stream.write(r);
    // A client held while the stream opened reads again once the stream took the queue in.
    if (this.#unqueue(req) > OPENING_LIMIT) {
      const resume = (): void => {
        if (this.#req === req && !this.#gone && !this.#handedOff) this.socket.resume();
      };
      if (t.stream.writableLength > CORKED_LIMIT) t.stream.once('drain', resume);
      else resume();
    }
    this.#watch(req);
    this.#readBody(req);
  }

  /** Body bytes kept for a stream that is not open yet: above OPENING_LIMIT the client waits. */
  #queue(req: InFlight, n: number): void {
    if (n === 0) return;
    req.queued += n;
    this.o.opening?.inc(n);
    if (req.queued > OPENING_LIMIT) this.socket.pause();
  }

  /** The queue went on a stream (or is dropped with the request): returns what it held. */
  #unqueue(req: InFlight): number {
    const n = req.queued;
    if (n > 0) this.o.opening?.dec(n);
    req.queued = 0;
    return n;
  }

  #attach(stream: TunnelStream, live: LiveConnection): Tunnel {
    const via = live.via && servedVia(stream);
    const t: Tunnel = {
      stream,
      live,
      drained: () => {
        if (this.#tunnel !== t) return;
        this.#takeBack(t);
        if (this.#req === undefined) this.#dropTunnel(false);
      },
      proxyStatus: via ? `Proxy-Status: ${nextHopStatus(via.location)}\r\n` : '',
      seen: 0,
      armed: 0,
      idleMark: 0,
      reading: false,
      misses: 0,
      ownMark: 0,
      adopted: 0,
      body: false,
    };
    this.#tunnel = t;
    const fd = EDGE_PUMP && stream.answerTo ? socketFd(this.socket) : undefined;
    if (fd !== undefined)
      t.pump = stream.answerTo!(fd, {
        keepAlive: this.keepAlive,
        extra: t.proxyStatus,
        done: () => this.#pumpDone(t),
        broken: (message, untouched, headRequest) =>
          t === this.#tunnel && (untouched ? this.#refused(new Error(message), headRequest) : this.#broken(new Error(message))),
        ownDone: (status, bytes, close) => this.#ownDone(t, status, bytes, close),
        ownCount: (status, count, bytes) => this.#countOwn(t, status, bytes, count),
        readBack: () => t === this.#tunnel && this.#takeBack(t),
        bodyEnd: (outcome) => t === this.#tunnel && this.#bodyEnd(t, outcome),
        // The client went away mid-answer (EPIPE, ECONNRESET): as its socket's 'close' would, quietly.
        failed: () => {
          if (t !== this.#tunnel) return;
          this.#dropTunnel(true);
          this.socket.destroy();
        },
      });
    if (t.pump) debug('answers of stream %d written to the client by the transport', stream.id);
    (live.onDrain ??= new Set()).add(t.drained);
    let failure: Error | undefined;
    stream.on('error', (err: Error) => (failure = err));
    stream.on('data', (chunk: Buffer) => this.#onTunnelData(t, chunk));
    stream.on('end', () => this.#onTunnelEnd(t, undefined));
    stream.on('close', () => this.#onTunnelEnd(t, failure ?? new Error('tunnel stream closed')));
    return t;
  }

  /** Ends (or, mid-request, destroys) the connection's stream; its events no longer count. */
  #dropTunnel(destroy: boolean): boolean {
    const t = this.#tunnel;
    if (!t) return false;
    this.#release(t);
    if (destroy) t.stream.destroy();
    else t.stream.end();
    return true;
  }

  /** The tunnel is no longer the connection's: its pump (and its duplicate of the socket's fd) goes. */
  #release(t: Tunnel): void {
    this.#bodyBack(t);
    this.#takeBack(t);
    // Whether the answer in flight began is the pump's to say, until now (t is still this.#tunnel).
    if (this.#req) this.#answered(this.#req);
    this.#tunnel = undefined;
    t.live.onDrain?.delete(t.drained);
    if (t.pump) {
      this.#pumped += pumped(t);
      t.pump.close();
      t.pump = undefined;
    }
  }

  /** The pumped answer in flight is whole and written (from the shared state: the record may come later): true when it was. */
  #pumpDone(t: Tunnel | undefined): boolean {
    const req = this.#req;
    const state = t?.pump?.state;
    if (!t || !state || t !== this.#tunnel || !req?.native || state[ANSWER_STATE.DONE] <= t.seen) return false;
    t.seen = state[ANSWER_STATE.DONE];
    req.answered = true;
    req.reader.status = state[ANSWER_STATE.STATUS];
    req.reader.close = state[ANSWER_STATE.CLOSE] === 1;
    this.#finished(req);
    return true;
  }

  /** The answer's first byte came (JS read it, or the pump did). */
  #answered(req: InFlight): boolean {
    if (!req.answered && req.native) {
      const t = this.#tunnel;
      // Answers to the requests the transport read count in STARTED too.
      if (t?.pump && t.pump.state[ANSWER_STATE.STARTED] >= t.armed + t.pump.state[ANSWER_STATE.OWN]) req.answered = true;
    }
    return req.answered;
  }

  #onTunnelData(t: Tunnel, chunk: Buffer): void {
    const req = this.#req;
    if (t !== this.#tunnel) return;
    if (!req) return this.#broken(new Error('bytes from the connector with no request in flight'));
    if (req.native) return this.#broken(new Error('bytes from the connector beside the answer the transport writes'));
    if (!req.answered) {
      req.answered = true;
      this.#clear(req);
    }
    const out: Buffer[] = [];
    let used: number;
    try {
      used = req.reader.feed(chunk, out);
    } catch (err) {
      return req.reader.untouched ? this.#refused(err as Error) : this.#broken(err as Error);
    }
    // A response's bytes arrive one TLS record (16 KiB) per 'data': held corked until the end of
    // this event-loop turn, they leave in one writev instead of one write each.
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      setImmediate(this.#uncork);
    }
    for (const b of out) this.socket.write(b);
    if (req.reader.done) {
      if (used < chunk.length) return this.#broken(new Error('bytes past the end of a response'));
      return this.#finished(req);
    }
    if (this.socket.writableLength > CORKED_LIMIT) {
      t.stream.pause();
      this.socket.once('drain', () => t.stream.resume());
    }
  }

  #onTunnelEnd(t: Tunnel, err: Error | undefined): void {
    if (t !== this.#tunnel) return;
    // A request the transport forwarded is ours from here (sent again, or its 502).
    this.#takeBack(t);
    // The pump's end of the answer goes before what it gave JS after it (the end of the stream).
    if (this.#pumpDone(t) || t !== this.#tunnel) return;
    const answered = this.#req ? this.#answered(this.#req) : false;
    this.#release(t);
    const req = this.#req;
    if (!req) return; // idle: the next request opens a stream
    if (!err && !req.native && req.reader.end()) return this.#finished(req);
    if (answered) return this.#broken(err ?? new Error('the response was cut short'));
    // A peer edge ends an http1 stream unread when its connectors of the tunnel serve none
    // (forwarding.ts): its requests take the per-request path, until its view reloads.
    if (!err && t.live.via) t.live.http1 = false;
    t.stream.destroy();
    this.#lost(req, err);
  }

  /**
   * The request's stream ended or failed before any answer. A clean end means the connector
   * read nothing (shutting down, its origin socket closed): sent again. A connection that
   * died: a bodyless idempotent request is sent again on a sibling that answers a probe.
   */
  #lost(req: InFlight, err: Error | undefined): void {
    if (this.#req !== req || this.#gone) return;
    this.#clear(req);
    // Only a request whose every byte is in hand can go again.
    if (req.sends < MAX_SENDS && req.bodyLeft === 0 && !req.streamed) {
      if (!err) {
        const live = this.#route(req.fr.host, req.chunked !== undefined);
        if (live) return this.#send(req, live);
        if (req.live.via && req.rawWhole) return this.#fallBack(req);
      } else if (IDEMPOTENT.has(req.fr.method) && req.fr.bodyLength === 0) {
        return void this.#answering(req.live).then((next) => {
          if (this.#req !== req || this.#gone) return;
          if (next) this.#send(req, next);
          else this.#fail(req, 502, 'destination_unavailable', `The connector for ${req.fr.host} did not answer.`, err);
        });
      }
    }
    this.#fail(req, 502, 'destination_unavailable', `The connector for ${req.fr.host} did not answer.`, err);
  }

  /** Another connection of the tunnel that answers a probe within LIVENESS_MS, if any. */
  #answering(dead: LiveConnection): Promise<LiveConnection | undefined> {
    const others = this.o.registry.connections(dead.tunnelId).filter((c) => c !== dead && !c.draining && !c.conn.isClosed && c.http1);
    if (others.length === 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let left = others.length;
      const timer = setTimeout(() => resolve(undefined), LIVENESS_MS);
      for (const other of others)
        void other.conn.probe().then((answered) => {
          if (answered) {
            clearTimeout(timer);
            resolve(other);
          } else if (--left === 0) {
            clearTimeout(timer);
            resolve(undefined);
          }
        });
    });
  }

  /** Timers while no answer came: the connector's answer deadline, and the liveness of the request's connection. */
  #watch(req: InFlight, since = 0): void {
    this.#clear(req);
    this.#deadline(req, this.o.responseTimeoutMs - since);
    if (!IDEMPOTENT.has(req.fr.method) || req.fr.bodyLength > 0 || req.sends >= MAX_SENDS) return;
    let probing = false;
    const check = (): void => {
      if (this.#req !== req || this.#answered(req)) return;
      const live = req.live;
      if (!probing && (live.conn.isClosed || live.conn.unansweredMs() > LIVENESS_MS)) {
        probing = true;
        void this.#answering(live).then((next) => {
          probing = false;
          // The request's own connection may have spoken meanwhile (only starved of CPU).
          if (!next || this.#req !== req || this.#answered(req) || !(live.conn.isClosed || live.conn.unansweredMs() > LIVENESS_MS)) return;
          this.o.log.info(
            { host: req.fr.host, method: req.fr.method, connection: live.id, sends: req.sends },
            'Resending an idempotent request: its tunnel connection stopped answering',
          );
          this.#dropTunnel(true);
          this.#send(req, next);
        });
      }
      req.watch = setTimeout(check, WATCH_EVERY_MS);
    };
    req.watch = setTimeout(check, Math.max(0, LIVENESS_MS - since));
  }

  /**
   * The connector's answer deadline. It counts from the end of the request's body: an upload
   * that takes longer than the deadline is not a late answer (its pace is bounded by the
   * request timeout's 408), so the deadline waits for the body and starts again there.
   */
  #deadline(req: InFlight, ms: number): void {
    clearTimeout(req.timer);
    req.timer = setTimeout(
      () => {
        if (this.#req !== req || this.#answered(req) || (req.bodyLeft > 0 && !req.bodyCut)) return;
        this.#dropTunnel(true);
        this.#fail(req, 504, 'http_response_timeout', `The connector for ${req.fr.host} did not answer in time.`);
      },
      Math.max(0, ms),
    );
  }

  /** The request's body is whole (read by JS or by the transport): its slow-body timer goes, the answer deadline starts. */
  #bodyEnded(req: InFlight): void {
    clearTimeout(req.bodyTimer);
    if (req.timer !== undefined && this.#req === req && !this.#answered(req)) this.#deadline(req, this.o.responseTimeoutMs);
  }

  #clear(req: InFlight): void {
    clearTimeout(req.timer);
    clearTimeout(req.watch);
  }

  /** The request is over (answered, refused or its client gone): none of its timers fires, and it holds no place in the stream's queue. */
  #retire(req: InFlight): void {
    this.#clear(req);
    clearTimeout(req.bodyTimer);
    this.#unqueue(req);
  }

  /** The connection cannot carry another request after this one: its body is not all read. */
  #mustClose(req: InFlight): boolean {
    return req.reader.close || req.bodyLeft > 0;
  }

  /** An answer the edge writes itself (the per-request path's pages), then on to the next request. */
  #fail(req: InFlight, status: number, type: ProxyErrorType, text: string, err?: Error): void {
    if (status === 504) this.o.log.debug({ host: req.fr.host, status }, text);
    else this.o.log.warn({ err, host: req.fr.host }, 'Request through the tunnel failed');
    this.o.traffic?.error(type);
    this.socket.write(this.#page(status, type, text, this.#mustClose(req), req.fr.method === 'HEAD'));
    req.reader.status = status;
    if (req.bodyLeft > 0) req.reader.close = true;
    this.#finished(req);
  }

  /** A response is whole: count it, then keep the connection for the next request (or close it). */
  #finished(req: InFlight): void {
    // A body the transport read whole, whose end JS has not heard of yet: the connection may go on.
    const t = this.#tunnel;
    if (t?.body && t.pump!.state[ANSWER_STATE.BODY_DONE] === 1) this.#bodyBack(t);
    this.#retire(req);
    this.#req = undefined;
    this.o.requests?.inc({ status: String(req.reader.status) });
    this.o.traffic?.http(req.fr.host, this.#bytes() - req.mark - (this.#buf?.length ?? 0));
    if (this.#mustClose(req) || (this.#clientEnded && !this.#buf)) return this.#closeAfterAnswer();
    if (req.live.draining) this.#dropTunnel(false);
    this.socket.setTimeout(this.o.timeouts.keepAliveMs);
    if (this.socket.isPaused()) this.socket.resume();
    this.#next();
    this.#readNatively();
  }

  /** The last answer is written (or, from #endBody, destroying the stream): the connection half-closes, and what the client still sends is dropped, bounded (util/linger.ts). */
  #closeAfterAnswer(destroy = false): void {
    this.#closing = true;
    this.#dropTunnel(destroy);
    this.#buf = undefined;
    this.socket.off('data', this.#onData);
    closeAfterAnswer(this.socket);
  }

  /**
   * The connector's answer was refused before any of it was framed (obs-fold, a bad status line,
   * garbage): its stream goes, the client gets the 502 page and then the close. The per-request
   * path's client gets the 502 page for such an answer too (the connector's undici refuses it).
   */
  #refused(err: Error, headRequest = false): void {
    const req = this.#req;
    const text = (host: string): string => `The origin for ${host} sent an answer that cannot be forwarded.`;
    if (!req) {
      // A request the transport read and forwarded itself: no InFlight here, the page goes as is.
      const t = this.#tunnel;
      if (!t || !this.#ownInFlight()) return this.#broken(err);
      const host = t.host ?? '';
      this.o.log.warn({ err, host }, 'Request through the tunnel failed');
      this.o.traffic?.error('http_protocol_error');
      this.#dropTunnel(true);
      this.socket.write(this.#page(502, 'http_protocol_error', text(host), true, headRequest));
      this.o.requests?.inc({ status: '502' });
      return this.#closeAfterAnswer();
    }
    this.#dropTunnel(true);
    req.reader.close = true;
    this.#fail(req, 502, 'http_protocol_error', text(req.fr.host), err);
  }

  /** An answer the edge writes itself: the error page, its head saying close or the keep-alive lines. */
  #page(status: number, type: ProxyErrorType, text: string, close: boolean, headRequest: boolean): Buffer {
    const page = errorPage(status, type, text);
    let head = `HTTP/1.1 ${page.status} ${STATUS_CODES[page.status] ?? ''}\r\n`;
    for (const [k, v] of page.headers) head += `${k}: ${v}\r\n`;
    head += close ? 'Connection: close\r\n' : this.keepAlive;
    return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), headRequest ? Buffer.alloc(0) : page.body]);
  }

  /** The connector's bytes cannot be framed once part of the answer went, or the answer was cut: as the per-request path does, the client's connection goes. */
  #broken(err: Error): void {
    this.o.log.warn({ err, host: this.#req?.fr.host }, 'Request through the tunnel failed');
    this.#dropTunnel(true);
    this.socket.destroy();
  }

  /** A request that no http1 stream serves any more goes to the per-request path with the bytes after it. */
  #fallBack(req: InFlight): void {
    clearTimeout(req.bodyTimer);
    this.#unqueue(req);
    this.#req = undefined;
    this.#buf = this.#buf ? Buffer.concat([req.raw, this.#buf]) : req.raw;
    this.#handOff();
  }

  /** Node's server takes the connection from here, with the bytes not answered yet. */
  #handOff(): void {
    if (this.#handedOff) return;
    if (this.#clientEnded) return void this.socket.end();
    this.#handedOff = true;
    this.#dropTunnel(false);
    const s = this.socket;
    s.pause();
    s.off('data', this.#onData);
    s.off('end', this.#onEnd);
    s.off('timeout', this.#onTimeout);
    s.off('close', this.#onClose);
    s.setTimeout(0);
    this.sockets.delete(s);
    if (this.#buf) s.unshift(this.#buf);
    this.#buf = undefined;
    // Node's parser would read the socket's handle directly and skip the bytes put back: read them as 'data'.
    const handle = (s as unknown as { _handle?: { _consumed?: boolean } })._handle;
    if (handle) handle._consumed = true;
    this.o.handOff(s);
    s.resume();
  }
}
