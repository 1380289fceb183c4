/**
 * The connector's side of an `http1` stream (protocol/http1.ts, WIRE.md §7): the requests of
 * one client connection, each picking its ingress rule by Host and path. A plain http://
 * origin (no httpHostHeader, no HTTP/2) gets the bytes spliced: one origin socket held for
 * the stream, the request head and body written as they come (a chunked body as the client
 * chunked it: the edge checked its framing), the origin's bytes piped back unparsed. Any other
 * rule goes through the per-request path (OriginProxy.relayHttp, undici), a chunked body
 * de-chunked for it, and its answer is written back as HTTP/1.1. The edge sends a request only once the previous
 * response ended, so switching the origin socket between requests never mixes answers.
 *
 * On the addon's QUIC (ngtcp2) a spliced origin socket is handed to the addon once connected
 * (TunnelStream.pumpTo): its answers go out as the stream's data without reaching JS, and the
 * addon reads the stream's records: request bodies go to the socket without JS, each HEAD comes
 * here for the rule (written to the pump, or the pump closed and the records read here again).
 * Once a head went to a pumped origin, the pump gets a route when the rule was picked by the
 * host alone (or the ingress has one rule): the addon then writes the heads of that host's
 * requests itself, and JS hears of them per answer, lazily (the counters), and, if the origin
 * goes, the last one (to send it again or answer 502 for it). `OXY_QUIC_PUMP=0` keeps the socket
 * in JS; `OXY_QUIC_HEADS=js` every head.
 */
import { STATUS_CODES } from 'node:http';
import { connect, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { debuglog, getSystemErrorName } from 'node:util';
import { socketFd } from '../native/index.js';
import type { Logger } from '../observe/log.js';
import { HOP_BY_HOP, type HttpResponseHead } from '../protocol/http-head.js';
import { answerStatus, CHUNKED_BODY, ChunkedBody, decodeHead, Http1RecordReader, headPairs, responseHeadBytes, type HeadRecord } from '../protocol/http1.js';
import { dialErrorType, errorPage } from '../protocol/proxy-status.js';
import type { FdPump, TunnelStream } from '../transport/types.js';
import type { IngressRule } from './ingress.js';
import type { ConnectorMetrics } from './metrics.js';
import type { OriginProxy } from './origin.js';

/** Where a rule's requests can be spliced to, or undefined when they need the per-request path. */
function spliceTarget(rule: IngressRule): { host: string; port: number } | undefined {
  const s = rule.service;
  const o = rule.originRequest;
  if (s.kind !== 'http' || (s.url.protocol !== 'http:' && s.url.protocol !== 'ws:') || o.httpHostHeader !== undefined || o.http2Origin) return undefined;
  return { host: s.url.hostname.replace(/^\[|\]$/g, ''), port: Number(s.url.port) || 80 };
}

const pathOnly = (target: string): string => {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
};

/** Bytes an origin socket may hold (corked or unsent) before the tunnel stream pauses. */
const CORKED_LIMIT = 1024 * 1024;
/**
 * Origin sockets are pumped by the addon where the stream can (QUIC on ngtcp2), and it reads the
 * stream's records: BODY bytes to the socket, HEADs here (`OXY_QUIC_PUMP=heads`: only deliveries
 * that are one whole HEAD, bodies through here; `=fd`: the socket only; `=0`: no pump).
 */
const PUMP_MODE = process.env.OXY_QUIC_PUMP ?? '';
const PUMP = PUMP_MODE !== '0';
const PUMP_HEADS = PUMP_MODE !== 'fd';
const PUMP_RECORDS = PUMP_MODE !== 'heads' && PUMP_HEADS;
/** Pumps route heads by host themselves (FdPump.route); `OXY_QUIC_HEADS=js`: every head through here. */
const ROUTE_HEADS = PUMP_RECORDS && process.env.OXY_QUIC_HEADS !== 'js';
const debug = debuglog('oxy:connector:http1');

interface OriginSocket {
  socket: Socket;
  rule: IngressRule;
  /** It has answered a request before (a close with no answer may be its idle timeout: resend). */
  used: boolean;
  /** The addon pumps it (the socket is closed then): writes go here. */
  pump?: FdPump;
  /** Bytes written before the socket connected, when it is to be pumped (head: a request starts). */
  early?: { data: Buffer; head: boolean }[];
  earlyBytes: number;
  /** The tunnel stream paused for this origin: resumed on drain or when it goes. */
  resume?: () => void;
  /** The pump's route (FdPump.route): true for any host, else the host it writes heads for. */
  route?: true | string;
}

interface Current {
  rec: HeadRecord;
  rule: IngressRule;
  /** Body bytes still to come (Infinity for a chunked body: the edge knows where it ends). */
  bodyLeft: number;
  answered: boolean;
  resent: boolean;
  /** The per-request path's body. */
  upload?: PassThrough;
  /** A chunked body on the per-request path: de-chunked for undici, which chunks it again. */
  chunked?: ChunkedBody;
}

export class Http1StreamServer {
  readonly #reader: Http1RecordReader;
  #origin: OriginSocket | undefined;
  #current: Current | undefined;
  /** Records that came while a per-request relay still ran (rare: the edge waits for each answer). */
  #queue: (() => void)[] | undefined;
  #finished = false;
  /** Requests whose heads a pump wrote itself (answered), for the debug line at the end. */
  #fastHeads = 0;
  /** The origin socket corked until the end of this event-loop turn. */
  #corked: Socket | undefined;
  readonly #uncork = (): void => {
    this.#corked?.uncork();
    this.#corked = undefined;
  };
  #resolve!: () => void;
  readonly done: Promise<void>;

  constructor(
    private readonly stream: TunnelStream,
    private readonly origins: OriginProxy,
    private readonly log: Logger,
    private readonly accepting: () => boolean,
    private readonly metrics?: ConnectorMetrics,
  ) {
    this.done = new Promise((resolve) => (this.#resolve = resolve));
    this.#reader = new Http1RecordReader(
      (rec) => this.#enqueue(() => this.#head(rec), false),
      (bytes) => this.#enqueue(() => this.#body(bytes), true),
    );
    stream.on('data', (chunk: Buffer) => {
      try {
        this.#reader.push(chunk);
      } catch (err) {
        this.log.debug({ err }, 'http1 stream: bad record');
        this.#finish(err as Error);
      }
    });
    stream.on('end', () => this.#finish());
    stream.on('close', () => this.#finish());
    stream.on('error', (err: Error) => this.#finish(err));
  }

  /** The relayed request's own body goes on at once; a later request waits for its answer to end. */
  #enqueue(step: () => void, body: boolean): void {
    if (this.#finished) return;
    if (this.#queue && (!body || this.#queue.length > 0)) this.#queue.push(step);
    else step();
  }

  #head(rec: HeadRecord): void {
    this.#ended();
    if (!this.accepting()) {
      // Shutting down: unanswered, so the edge may send it again elsewhere.
      this.#finish();
      return;
    }
    const rule = this.origins.ingress.match(rec.host, pathOnly(rec.path));
    this.metrics?.requestStarted();
    const current: Current = { rec, rule, bodyLeft: rec.bodyLength === CHUNKED_BODY ? Infinity : rec.bodyLength, answered: false, resent: false };
    this.#current = current;
    const target = spliceTarget(rule);
    if (!target) return this.#relay(current);
    let o = this.#origin;
    if (o && o.rule !== rule) {
      this.#drop(o);
      o = undefined;
    }
    o ??= this.#dial(rule, target);
    this.#write(o, rec.head, true);
    if (o.pump && ROUTE_HEADS) this.#route(o);
  }

  /** The pump writes the heads of the current request's host itself when the rule is picked by host alone. */
  #route(o: OriginSocket): void {
    const c = this.#current;
    if (!c || c.rule !== o.rule || !o.pump?.route) return;
    const by = this.accepting() ? this.origins.ingress.decidedBy(c.rec.host, o.rule) : undefined;
    const route = by === 'any' ? true : by === 'host' ? c.rec.host : undefined;
    if (route === o.route) return;
    o.route = route;
    o.pump.route(typeof route === 'string' ? Buffer.from(route) : route);
  }

  /** Shutting down: every head comes here again (and ends the stream: the edge sends it elsewhere). */
  stopRouting(): void {
    const o = this.#origin;
    if (o?.route === undefined) return;
    o.route = undefined;
    o.pump?.route?.(undefined);
  }

  /** Request bytes for a spliced origin: the addon's pump, held until it connects, or the socket. */
  #write(o: OriginSocket, data: Buffer, head: boolean): void {
    if (o.pump) {
      if (!o.pump.write(data, head)) this.#pauseForOrigin(o);
      return;
    }
    if (o.early) {
      o.early.push({ data, head });
      o.earlyBytes += data.length;
      if (o.earlyBytes > CORKED_LIMIT) this.#pauseForOrigin(o);
      return;
    }
    if (head) {
      o.socket.write(data);
      return;
    }
    // An upload's bytes arrive one TLS record (16 KiB) per 'data': held corked until the end of
    // this event-loop turn, they leave in one writev instead of one write each.
    const socket = o.socket;
    if (!this.#corked) {
      this.#corked = socket;
      socket.cork();
      setImmediate(this.#uncork);
    }
    socket.write(data);
    if (socket.writableLength > CORKED_LIMIT) this.#pauseFor(socket);
  }

  /** Stop reading the tunnel until the pumped origin drains (or goes). */
  #pauseForOrigin(o: OriginSocket): void {
    if (o.resume) return;
    this.stream.pause();
    o.resume = () => {
      o.resume = undefined;
      this.stream.resume();
    };
  }

  /** Closes an origin socket (or its pump) that is no longer wanted. */
  #drop(o: OriginSocket): void {
    const bodyBytes = o.pump?.close() ?? 0;
    if (bodyBytes > 0) debug('stream %d: %d request body bytes went to the origin without JS', this.stream.id, bodyBytes);
    o.socket.destroy();
    o.early = undefined;
    o.resume?.();
  }

  #body(bytes: Buffer): void {
    const c = this.#current;
    if (!c || c.bodyLeft < bytes.length) return this.#finish(new Error('http1 stream: body bytes past the request'));
    c.bodyLeft -= bytes.length;
    if (c.upload) {
      // The origin request is over (undici destroys a body it no longer reads): the rest goes nowhere.
      if (c.upload.destroyed) return;
      let data: Buffer[] = [bytes];
      if (c.chunked) {
        data = [];
        try {
          c.chunked.feed(bytes, data);
        } catch (err) {
          return this.#finish(err as Error);
        }
      }
      let ok = true;
      for (const d of data) ok = c.upload.write(d);
      if (c.bodyLeft === 0 || c.chunked?.done) c.upload.end();
      else if (!ok) this.#pauseFor(c.upload);
    } else if (this.#origin) {
      this.#write(this.#origin, bytes, false);
    }
  }

  /** The origin reads slower than the client sends: stop reading the tunnel until `w` drains. */
  #pauseFor(w: PassThrough | Socket): void {
    this.stream.pause();
    const resume = (): void => {
      w.off('drain', resume);
      w.off('close', resume);
      this.stream.resume();
    };
    w.on('drain', resume);
    w.on('close', resume);
  }

  #dial(rule: IngressRule, target: { host: string; port: number }): OriginSocket {
    const o = rule.originRequest;
    const socket = connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      keepAlive: o.tcpKeepAliveMs > 0,
      keepAliveInitialDelay: o.tcpKeepAliveMs,
      autoSelectFamily: !o.noHappyEyeballs,
    });
    const origin: OriginSocket = { socket, rule, used: false, earlyBytes: 0 };
    if (PUMP && this.stream.pumpTo) origin.early = [];
    const timer = setTimeout(() => socket.destroy(new Error(`dial tcp ${target.host}:${target.port}: i/o timeout`)), o.connectTimeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      if (origin.early) this.#pump(origin);
    });
    socket.on('data', (chunk: Buffer) => this.#originData(origin, chunk));
    let failure: Error | undefined;
    socket.on('error', (err) => (failure = err));
    socket.on('close', () => {
      clearTimeout(timer);
      if (!origin.pump) this.#originClosed(origin, failure);
    });
    this.#origin = origin;
    return origin;
  }

  /** The origin connected: the addon takes its socket, or (it cannot now) JS keeps it. */
  #pump(origin: OriginSocket): void {
    const early = origin.early ?? [];
    origin.early = undefined;
    const fd = socketFd(origin.socket);
    const heads = PUMP_HEADS
      ? {
          head: (payload: Buffer) => this.#pumpedHead(payload),
          bodyLeft: () => this.#reader.bodyLeft,
          records: PUMP_RECORDS,
          handOver: () => this.#reader.handOver(),
        }
      : {};
    const pump =
      origin === this.#origin && !this.#finished && fd !== undefined
        ? this.stream.pumpTo?.(fd, {
            answer: (status) => this.#answered(origin, status),
            end: (errno) =>
              this.#originClosed(
                origin,
                errno ? Object.assign(new Error(`origin socket: ${getSystemErrorName(-errno)}`), { code: getSystemErrorName(-errno) }) : undefined,
              ),
            drain: () => origin.resume?.(),
            fastStart: (count) => this.#fastStarted(count),
            fastAnswer: (status, count) => this.#fastAnswered(origin, status, count),
            fastHead: (payload, answered) => this.#fastHead(origin, payload, answered),
            ...heads,
          })
        : undefined;
    if (pump) {
      debug('stream %d: origin socket pumped by the addon', this.stream.id);
      origin.pump = pump;
      // The addon holds a duplicate: closing ours sends nothing to the origin.
      origin.socket.removeAllListeners('data');
      origin.socket.destroy();
    }
    const resume = origin.resume;
    origin.resume = undefined;
    for (const e of early) this.#write(origin, e.data, e.head);
    if (resume && !origin.resume) resume();
    if (pump && ROUTE_HEADS) this.#route(origin);
  }

  #originData(origin: OriginSocket, chunk: Buffer): void {
    const c = this.#current;
    if (origin !== this.#origin || !c || this.#finished) return;
    if (!c.answered) {
      this.#answered(origin, answerStatus(chunk));
    }
    // Paused only above CORKED_LIMIT unsent, not at the Http2Stream's 16 KiB high-water mark:
    // that stopped and restarted reading the origin (two epoll_ctl) after every 64 KiB read.
    this.stream.write(chunk);
    if (this.stream.writableLength > CORKED_LIMIT && !origin.socket.isPaused()) {
      origin.socket.pause();
      this.stream.once('drain', () => origin.socket.resume());
    }
  }

  /** A whole HEAD record straight from the addon (no Duplex, no frame or record parsing here). */
  #pumpedHead(payload: Buffer): void {
    let rec: HeadRecord;
    try {
      rec = decodeHead(payload);
    } catch (err) {
      return this.#finish(err as Error);
    }
    this.#enqueue(() => this.#head(rec), false);
  }

  /** Requests whose heads the pump wrote itself (its route): counted as ones that came and went (this stream's one in flight stays). */
  #fastStarted(count: number): void {
    this.#fastHeads += count;
    const m = this.metrics;
    if (!m) return;
    for (let i = 0; i < count; i++) {
      m.requestStarted();
      m.requestEnded();
    }
  }

  /** Answers to requests whose heads the pump wrote itself began. */
  #fastAnswered(origin: OriginSocket, status: number, count: number): void {
    if (origin === this.#origin) origin.used = true;
    const m = this.metrics;
    if (m) for (let i = 0; i < count; i++) m.responded({ status, headers: [] });
  }

  /** The origin went with the last request's head written by the pump: it is the current request. */
  #fastHead(origin: OriginSocket, payload: Buffer, answered: boolean): void {
    if (origin !== this.#origin || this.#finished) return;
    let rec: HeadRecord;
    try {
      rec = decodeHead(payload);
    } catch (err) {
      return this.#finish(err as Error);
    }
    // Counted already (fastStart): it takes the place of the request in flight.
    this.#current = { rec, rule: origin.rule, bodyLeft: rec.bodyLength === CHUNKED_BODY ? Infinity : rec.bodyLength, answered, resent: false };
  }

  /** The origin's first bytes for the current request. */
  #answered(origin: OriginSocket, status: number): void {
    const c = this.#current;
    if (origin !== this.#origin || !c || c.answered || this.#finished) return;
    c.answered = true;
    origin.used = true;
    this.metrics?.responded({ status, headers: [] });
  }

  #originClosed(origin: OriginSocket, err: Error | undefined): void {
    if (origin.pump) this.#drop(origin);
    if (origin !== this.#origin || this.#finished) return;
    this.#origin = undefined;
    const c = this.#current;
    if (!c || c.answered) {
      // After an answer the response is complete or delimited by this close: the edge decides
      // which. Requests that cross this end are not read: the edge sends them again.
      if (c) this.#finish();
      return;
    }
    const target = spliceTarget(c.rule)!;
    if (origin.used && c.rec.bodyLength === 0 && !c.resent) {
      // An idle keep-alive connection the origin closed as the request went out (as Go's
      // transport does, sent once more on a fresh connection).
      c.resent = true;
      this.#write(this.#dial(c.rule, target), c.rec.head, true);
      return;
    }
    this.log.error({ err, originService: c.rule.serviceText, path: c.rec.path }, 'Request failed');
    const page = errorPage(502, dialErrorType(err), `The origin for ${c.rec.host} is not reachable right now.`);
    this.#answerPage(c, page);
  }

  #answerPage(c: Current, page: { status: number; headers: [string, string][]; body: Buffer }): void {
    c.answered = true;
    this.metrics?.responded({ status: page.status, headers: page.headers });
    this.stream.write(responseHeadBytes(page.status, STATUS_CODES[page.status] ?? '', page.headers), 'latin1');
    this.stream.write(page.body);
  }

  /** The per-request path for rules that need it: undici, its answer written as HTTP/1.1. */
  #relay(c: Current): void {
    if (this.#origin) {
      this.#drop(this.#origin);
      this.#origin = undefined;
    }
    const { rec } = c;
    const head = { method: rec.method, host: rec.host, path: rec.path, headers: headPairs(rec.head) };
    if (rec.bodyLength > 0) c.upload = new PassThrough().on('error', () => undefined);
    if (rec.bodyLength === CHUNKED_BODY) c.chunked = new ChunkedBody();
    const out = new ResponseWriter(this.stream, rec.method === 'HEAD');
    this.#queue = [];
    this.origins
      .relayHttp(c.rule, head, c.upload ?? null, out, (resHead) => {
        c.answered = true;
        this.metrics?.responded(resHead);
        out.head(resHead);
      })
      .catch((err: Error) => {
        this.log.debug({ err }, 'http1 stream: origin failed mid-response');
        this.#finish(err);
      })
      .finally(() => {
        const queued = this.#queue ?? [];
        this.#queue = undefined;
        for (const step of queued) step();
      });
  }

  /** The previous request is over (a new one came, or the stream ends). */
  #ended(): void {
    if (this.#current) this.metrics?.requestEnded();
    this.#current = undefined;
  }

  #finish(err?: Error): void {
    if (this.#finished) return;
    this.#finished = true;
    if (err) debug('stream %d: %s', this.stream.id, err.message);
    if (this.#fastHeads > 0) debug('stream %d: %d request heads went to the origin without JS', this.stream.id, this.#fastHeads);
    this.#ended();
    if (this.#origin) this.#drop(this.#origin);
    this.#origin = undefined;
    this.#queue = undefined;
    if (err) this.stream.destroy();
    else this.stream.end();
    this.#resolve();
  }
}

/** A relayed response as HTTP/1.1 bytes on the stream: its head, then its body (chunked when it has no length). */
class ResponseWriter extends Writable {
  #chunked = false;

  constructor(
    private readonly stream: TunnelStream,
    private readonly headRequest: boolean,
  ) {
    super();
    // The tunnel stream going away aborts the origin request (relayHttp listens to this writer).
    const gone = (): void => void (this.destroyed || this.writableFinished || this.destroy(new Error('the tunnel stream closed')));
    stream.once('close', gone);
    this.once('close', () => stream.off('close', gone));
    // Its error is why it was cut (the origin failed, the tunnel stream went): the relay reads that
    // from its own callbacks, and one that comes after the relay settled (an end() waiting on the
    // stream's drain) must not end the connector as an uncaught 'error'.
    this.on('error', () => undefined);
  }

  head(h: HttpResponseHead): void {
    const headers = h.headers.filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()));
    const bodyless = this.headRequest || h.status === 204 || h.status === 304 || h.status < 200;
    if (!bodyless && !headers.some(([k]) => k.toLowerCase() === 'content-length')) {
      this.#chunked = true;
      headers.push(['transfer-encoding', 'chunked']);
    }
    this.stream.write(responseHeadBytes(h.status, STATUS_CODES[h.status] ?? '', headers), 'latin1');
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.length === 0) return cb();
    const ok = this.#chunked
      ? (this.stream.write(`${chunk.length.toString(16)}\r\n`, 'latin1'), this.stream.write(chunk), this.stream.write('\r\n', 'latin1'))
      : this.stream.write(chunk);
    if (ok || this.stream.destroyed) cb();
    else this.stream.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#chunked) this.stream.write('0\r\n\r\n', 'latin1');
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Cut mid-response (the origin failed): the edge must see the stream cut, not a short answer.
    if (err) this.stream.destroy();
    cb(err);
  }
}
