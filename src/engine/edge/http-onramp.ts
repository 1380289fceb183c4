/**
 * The public HTTP on-ramp (`edge run --http-listen`): requests whose Host names a public
 * hostname (`tunnel route dns`) travel as `http` streams to a connector of that tunnel;
 * upgrades (WebSocket, and raw `Upgrade: tcp` for tcp:// services) as `websocket` streams
 * whose bytes are piped both ways after the 101. Bodies stream with backpressure in both
 * directions.
 *
 * Hooks (`ctx.onramp` `public-hostname`, order in HOOK_ORDER['public-hostname']): when the
 * application implements an `ingress` or an HTTP request hook, or the listener expects
 * PROXY headers (`--proxy-protocol`), each TCP connection is admitted first (admission.ts:
 * newCtx → proxyProtocol.handleConnection → ingress.handleConnection), then per request
 * http.handleRequest runs before the request goes into the tunnel and http.handleResponse
 * on the tunnel's answer, with streaming body rewrites both ways; ingress.handleConnectionClose
 * ends the connection. Upgrades run both hooks on their heads but never rewrite bodies (the
 * bytes after a 101 are the upgraded protocol's). A hook that throws fails only its request
 * (502, and a log line naming it). Without such hooks the listener is a plain http.Server:
 * no hook code runs per connection or per request.
 */
import { STATUS_CODES, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Counter, Gauge } from 'prom-client';
import { bridge, pump } from '../util/pump.js';
import { createHttpServer, httpTimeouts, type HttpTimeouts } from '../util/http-server.js';
import { closeAfterAnswer } from '../util/linger.js';
import { Http1FastPath } from './http1-fast.js';
import type { Logger } from '../observe/log.js';
import { splitHostPort } from '../../core/address.js';
import { HOP_BY_HOP, decodeResponseHead, encodeRequestHead, pairsFromRaw, type HeaderPairs, type HttpRequestHead } from '../protocol/http-head.js';
import { encodeRequestHeader, readStreamHeader, ResponseStatus, type StreamKind } from '../protocol/stream-header.js';
import type { TunnelStream } from '../transport/types.js';
import { errorPage, nextHopStatus, type ProxyErrorType } from '../protocol/proxy-status.js';
import { servedVia } from './forwarding.js';
import { isOxyError } from '../../core/errors.js';
import { requestHook, responseHook, rewritten, syntheticBytes, writeSynthetic } from './pipeline/http.js';
import { HookError, type HookConnection, type HookRunner } from '../hooks/runner.js';
import type { BodyTransform, HttpSynthetic } from '../hooks/types.js';
import { AdmittingListener } from './pipeline/admission.js';
import { LIVENESS_MS, type LiveConnection, type TunnelRegistry } from './registry.js';
import type { StoreView } from './store-view.js';
import type { TrafficRecorder } from './traffic.js';
import { listenOn } from '../native/reuseport.js';
import { HandoffFront, type Siblings } from './handoff.js';

export interface HttpOnrampOptions {
  /** HOST:PORT to listen on (port 0: any). */
  listen: string;
  /** Share the address with the edge's other workers (SO_REUSEPORT). */
  reusePort?: boolean;
  /** The edge's other workers: a connection whose tunnel only a sibling holds is handed to it (handoff.ts; not with hooks or PROXY headers). */
  siblings?: Siblings;
  /** Counts connections handed to a sibling. */
  onHandOff?: () => void;
  view: StoreView;
  registry: TunnelRegistry;
  log: Logger;
  /** The application's hooks (HookRunner.none(): the engine's defaults). */
  runner: HookRunner;
  /** Every connection starts with a PROXY protocol v1/v2 header (a load balancer in front). */
  proxyProtocol?: boolean;
  requests?: Counter<'status'>;
  /** Request body bytes the fast path holds while tunnel streams open. */
  opening?: Gauge;
  /** Quick tunnel: the tunnel that serves every host without a hostname route. */
  defaultTunnel?: string;
  /** How long to wait for the connector's response head. */
  responseTimeoutMs?: number;
  /** Client-side timeouts (defaults: HTTP_TIMEOUTS). */
  timeouts?: Partial<HttpTimeouts>;
  traffic?: TrafficRecorder;
}

/** A request the on-ramp answers itself: status, RFC 9209 error type, the visitor's text; `detail` is for the log only. */
class OnrampError extends Error {
  constructor(
    readonly status: number,
    readonly proxyError: ProxyErrorType,
    message: string,
    readonly detail?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Bytes a client's socket has moved so far, both ways: the difference across a request is its share. */
const socketBytes = (s: Socket | Duplex): number => ((s as Socket).bytesRead ?? 0) + ((s as Socket).bytesWritten ?? 0);

/**
 * The head that goes into the tunnel: hop-by-hop headers dropped (all kept for an upgrade,
 * which needs them), `X-Forwarded-For` extended with the client, `X-Forwarded-Proto` set.
 */
function tunnelHead(method: string, host: string, path: string, headers: HeaderPairs, client: string, upgrade: boolean): HttpRequestHead {
  let xff: string | undefined;
  const forwarded: HeaderPairs = [];
  for (const pair of headers) {
    const name = pair[0].toLowerCase();
    if (name === 'x-forwarded-for') xff = xff === undefined ? pair[1] : `${xff}, ${pair[1]}`;
    else if (name !== 'x-forwarded-proto' && (upgrade || !HOP_BY_HOP.has(name))) forwarded.push(pair);
  }
  forwarded.push(['X-Forwarded-For', xff ? `${xff}, ${client}` : client], ['X-Forwarded-Proto', 'http']);
  return { method, host, path, headers: forwarded };
}

/**
 * RFC 9112 §3.2: a request with more than one Host is answered 400 (which one the origin
 * would take is anyone's guess: a routing and smuggling hazard).
 */
function checkHost(req: IncomingMessage): void {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].length === 4 && req.rawHeaders[i].toLowerCase() === 'host') hosts++;
  if (hosts > 1) throw new OnrampError(400, 'http_request_error', 'A request must have exactly one Host header.');
}

/**
 * Where a request goes: its Host and its origin-form target. An absolute-form target
 * (`GET http://other.example.com/x`) names the host itself, and RFC 9112 §3.2.2 says the
 * Host header is then ignored: routing by Host while the origin read the URL would let a
 * request for one hostname (and its hooks) reach another name's virtual host behind the
 * same origin. The head carries the URL's host and path, and a Host header that says so.
 */
function requestTarget(req: IncomingMessage): { host: string; path: string; headers: HeaderPairs } {
  const target = req.url ?? '/';
  const headers = pairsFromRaw(req.rawHeaders);
  if (target.startsWith('/') || target === '*') return { host: req.headers.host ?? '', path: target, headers };
  let url: URL | undefined;
  try {
    url = new URL(target);
  } catch {}
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.host)
    throw new OnrampError(400, 'http_request_error', 'The request target must be a path or an http(s) URL.');
  const host = url.host;
  return { host, path: `${url.pathname}${url.search}`, headers: [...headers.filter(([k]) => k.toLowerCase() !== 'host'), ['Host', host]] };
}

const requestHead = (req: IncomingMessage): HttpRequestHead => (checkHost(req), headFor(req));

function headFor(req: IncomingMessage): HttpRequestHead {
  const t = requestTarget(req);
  return tunnelHead(req.method ?? 'GET', t.host, t.path, t.headers, req.socket.remoteAddress ?? '', req.headers.upgrade !== undefined);
}

const ignore = (): void => undefined;

/**
 * Methods that may be sent again (RFC 9110 §9.2.2): without a body, a request of these that
 * went to a connection that died before anyone could tell is resent on another connection.
 */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Sends of one idempotent request at most (the first and the retries). */
const MAX_SENDS = 3;
/** How often a request waiting for its answer checks that its connection still answers. */
const WATCH_EVERY_MS = 100;

/**
 * A forwarded answer names the edge that served it (RFC 9209 `next-hop`, as the CONNECT proxy
 * names its upstream): `Proxy-Status: oxyctl; next-hop="<its location>"` — the edge the stream
 * went through, which after a holder failover is not the one picked first.
 */
function served<T extends { headers: HeaderPairs }>(response: T, stream: TunnelStream): T {
  const via = servedVia(stream);
  if (via) response.headers.push(['proxy-status', nextHopStatus(via.location)]);
  return response;
}

/** A request's connection died (closed, or silent past LIVENESS_MS) before its answer began, and another answers. */
class ConnectionLost extends Error {
  constructor(readonly next: LiveConnection) {
    super('tunnel connection lost');
  }
}

/** RFC 9112 §6.3: without Content-Length or Transfer-Encoding a request has no body. */
const isBodyless = (req: IncomingMessage): boolean => (req.headers['content-length'] ?? '0') === '0' && req.headers['transfer-encoding'] === undefined;

/** What a request becomes after `http.handleRequest`: the hook's own answer, or the head for the tunnel and a body rewrite. */
type Hooked = HttpSynthetic | { head: HttpRequestHead; body?: BodyTransform };

export class HttpOnramp {
  readonly #server: HttpServer;
  /** Set when hooks or PROXY headers need each connection admitted before HTTP. */
  readonly #admitting?: AdmittingListener;
  /** Without hooks: keep-alive HTTP/1.1 connections ride one http1 stream each (http1-fast.ts). */
  #fast?: Http1FastPath;
  /** A worker's front: reads the first head to hand a connection to a sibling (handoff.ts). */
  #front?: HandoffFront;

  static async listen(o: HttpOnrampOptions): Promise<HttpOnramp> {
    const onramp = new HttpOnramp(o);
    if (onramp.#admitting) await onramp.#admitting.listen(o.listen, { reusePort: o.reusePort });
    else if (o.siblings) {
      // A worker of several: a connection for a tunnel a sibling holds goes to that sibling.
      const view = o.view;
      onramp.#front = new HandoffFront({
        http: onramp.#server,
        siblings: o.siblings,
        tunnelFor: (host) => view.tunnelForHost(host) ?? o.defaultTunnel,
        holdsHere: (tunnelId) => o.registry.connections(tunnelId).length > 0,
        headersMs: httpTimeouts(o.timeouts).headersMs,
        log: o.log,
        onHandOff: o.onHandOff,
      });
      await onramp.#front.listen(o.listen, o.reusePort === true);
    } else {
      const { host, port } = splitHostPort(o.listen);
      await listenOn(onramp.#server, host, port, { reusePort: o.reusePort });
    }
    return onramp;
  }

  private constructor(private readonly o: HttpOnrampOptions) {
    const r = o.runner;
    const hooked = o.proxyProtocol || r.ingressConnection || r.ingressClose || r.httpRequest || r.httpResponse;
    if (!hooked) {
      this.#server = createHttpServer(this.#handleRequest, o.timeouts);
      this.#server.on('upgrade', this.#handleUpgrade);
      if (process.env.OXY_HTTP1_STREAMS !== '0') this.#fast = this.#fastPath(this.#server);
      return;
    }
    this.#server = createHttpServer((req, res) => void this.#hookedRequest(req, res), o.timeouts);
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.#hookedUpgrade(req, socket, head));
    this.#admitting = new AdmittingListener(this.#server, { runner: r, onramp: 'public-hostname', log: o.log, proxyProtocol: o.proxyProtocol });
  }

  get address(): AddressInfo {
    return this.#admitting?.address ?? this.#front?.address ?? (this.#server.address() as AddressInfo);
  }

  /**
   * Puts the fast path in front of Node's server: each accepted connection goes to it first,
   * and reaches the server's own 'connection' listeners (Node's HTTP parser) only when handed over.
   */
  #fastPath(server: HttpServer): Http1FastPath {
    const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    const fast = new Http1FastPath({
      view: this.o.view,
      registry: this.o.registry,
      log: this.o.log,
      requests: this.o.requests,
      opening: this.o.opening,
      defaultTunnel: this.o.defaultTunnel,
      responseTimeoutMs: this.o.responseTimeoutMs ?? 120_000,
      timeouts: httpTimeouts(this.o.timeouts),
      traffic: this.o.traffic,
      handOff: (socket) => {
        for (const l of listeners) l.call(server, socket);
      },
    });
    server.on('connection', (socket: Socket) => fast.accept(socket));
    return fast;
  }

  async close(): Promise<void> {
    this.#fast?.close();
    if (this.#admitting) return this.#admitting.close();
    this.#server.closeAllConnections();
    if (this.#front) {
      // Stops the HTTP server's timeout checks (it never listened itself: its callback says so, ignored).
      this.#server.close(() => undefined);
      await this.#front.close();
      return;
    }
    await new Promise((resolve) => this.#server.close(resolve));
  }

  /** Opens a stream and writes its request header; `end`: the request has no body, so that write ends the stream too. */
  async #openStream(kind: StreamKind, head: HttpRequestHead, end = false): Promise<{ stream: TunnelStream; live: LiveConnection }> {
    return this.#open(kind, head, end);
  }

  /** `on`: a connection known to answer (a resend), else the registry's pick. */
  async #open(kind: StreamKind, head: HttpRequestHead, end: boolean, on?: LiveConnection): Promise<{ stream: TunnelStream; live: LiveConnection }> {
    const host = head.host;
    const tunnelId = this.o.view.tunnelForHost(host) ?? this.o.defaultTunnel;
    if (!tunnelId) throw new OnrampError(404, 'destination_not_found', `No tunnel serves the hostname ${host || '(none)'}.`);
    const live = on && !on.conn.isClosed && !on.draining ? on : this.o.registry.pick(tunnelId);
    if (!live) throw new OnrampError(502, 'destination_unavailable', `No connector is serving ${host} right now.`, { tunnelID: tunnelId });
    if (live.via)
      this.o.log.debug(
        { host, tunnelID: tunnelId, edge: live.via.location, edgeID: live.via.edgeId },
        'Forwarding a request to the edge that holds its tunnel',
      );
    const stream = await live.conn.openStream();
    // The pumps handle errors while they run; one that comes after (a reset once done) must not crash.
    stream.on('error', ignore);
    const header = encodeRequestHeader({ kind, destination: `http://${host}${head.path}`, metadata: encodeRequestHead(head) });
    if (end) stream.end(header);
    else stream.write(header);
    return { stream, live };
  }

  /**
   * A bodyless request: sent whole, then its answer's head awaited. An idempotent one whose
   * connection dies before the answer begins (closed, or silent past LIVENESS_MS — a connector
   * SIGKILLed over QUIC says nothing for 15 s) is sent again on a connection that has just
   * answered a probe (a sibling, or a replacement that registers meanwhile), up to MAX_SENDS
   * times; `onStream` learns each stream so a client that leaves destroys the current one.
   */
  async #bodylessExchange(head: HttpRequestHead, onStream: (s: TunnelStream) => void) {
    const retryable = IDEMPOTENT.has(head.method);
    let on: LiveConnection | undefined;
    for (let sends = 1; ; sends++) {
      const { stream, live } = await this.#open('http', head, true, on);
      onStream(stream);
      if (!retryable || sends === MAX_SENDS) return { stream, response: served(await this.#responseHead(stream), stream) };
      try {
        return { stream, response: served(await this.#watchedResponseHead(stream, live), stream) };
      } catch (err) {
        if (!(err instanceof ConnectionLost)) throw err;
        stream.destroy();
        on = err.next;
        this.o.log.info(
          { host: head.host, method: head.method, connection: live.id, sends },
          'Resending an idempotent request: its tunnel connection stopped answering',
        );
      }
    }
  }

  /**
   * The answer's head, or ConnectionLost once `live` is closed or silent past LIVENESS_MS and
   * another connection of its tunnel answered a probe. Only a probe's answer counts: a
   * connection with nothing in flight looks fine whether its peer lives or not.
   */
  async #watchedResponseHead(stream: TunnelStream, live: LiveConnection) {
    const answer = this.#responseHead(stream);
    let found: (next: LiveConnection) => void = ignore;
    const resend = new Promise<LiveConnection>((resolve) => (found = resolve));
    const probed = new Set<LiveConnection>([live]);
    const probeOthers = (): void => {
      for (const other of this.o.registry.connections(live.tunnelId)) {
        if (probed.has(other) || other.draining || other.conn.isClosed) continue;
        probed.add(other);
        void other.conn.probe().then((answered) => {
          // The request's own connection may have spoken meanwhile (a connector that was only
          // starved of CPU): then nothing is resent, and the sibling may be asked again later.
          if (answered && (live.conn.isClosed || live.conn.unansweredMs() > LIVENESS_MS)) found(other);
          else probed.delete(other);
        });
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const check = (): void => {
      if (live.conn.isClosed || live.conn.unansweredMs() > LIVENESS_MS) probeOthers();
      timer = setTimeout(check, WATCH_EVERY_MS);
    };
    // Most answers come within LIVENESS_MS: those requests never pay for a check.
    timer = setTimeout(check, LIVENESS_MS);
    try {
      const first = await Promise.race([answer, resend]);
      if ('status' in first) return first;
      throw new ConnectionLost(first);
    } catch (err) {
      if (err instanceof ConnectionLost || err instanceof OnrampError || !live.conn.isClosed) throw err;
      // The stream reset because its connection closed: resend if a sibling answers a probe soon.
      clearTimeout(timer);
      probeOthers();
      const next = await Promise.race([resend, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), LIVENESS_MS)))]);
      if (next) throw new ConnectionLost(next);
      throw err;
    } finally {
      clearTimeout(timer);
      answer.catch(ignore);
    }
  }

  /** The connector's answer head; with `upload`, its deadline counts from the end of the request's body. */
  async #responseHead(stream: TunnelStream, upload?: Promise<void>) {
    const header = await readStreamHeader(stream, { expect: 'response', timeoutMs: this.o.responseTimeoutMs ?? 120_000, timeoutAfter: upload });
    if (header.status !== ResponseStatus.OK)
      throw new OnrampError(502, 'destination_unavailable', 'The connector refused the request.', { status: header.status, reason: header.message });
    return decodeResponseHead(header.metadata);
  }

  readonly #handleRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let stream: TunnelStream | undefined;
    const mark = this.o.traffic ? socketBytes(req.socket) : 0;
    res.on('close', () => {
      if (!res.writableFinished) stream?.destroy();
    });
    try {
      // A request without a body: the header and the end of the stream go in one write, with
      // no pipe to set up, and an idempotent one may be resent.
      let response: { status: number; headers: HeaderPairs };
      let upload: Promise<void> | undefined;
      if (isBodyless(req)) {
        req.resume();
        ({ stream, response } = await this.#bodylessExchange(requestHead(req), (s) => (stream = s)));
      } else {
        const { stream: s } = await this.#openStream('http', requestHead(req));
        stream = s;
        upload = pump(req, s).catch(() => void s.destroy());
        response = served(await this.#responseHead(s, upload), s);
      }
      res.writeHead(response.status, response.headers.flat());
      await pump(stream, res);
      await upload;
      this.o.requests?.inc({ status: String(response.status) });
    } catch (err) {
      // A refusal or a timeout after the stream opened: close it on both sides.
      stream?.destroy();
      this.#fail(res, err);
    }
    this.o.traffic?.http(req.headers.host ?? '', socketBytes(req.socket) - mark);
  };

  readonly #handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    let stream: TunnelStream | undefined;
    const mark = this.o.traffic ? socketBytes(socket) : 0;
    // After the 101 the bytes are a raw stream that half-closes (a client's FIN ends only its direction).
    (socket as Socket).allowHalfOpen = true;
    socket.on('error', () => stream?.destroy());
    req.on('error', () => undefined);
    try {
      const { stream: s } = await this.#openStream('websocket', requestHead(req));
      stream = s;
      await this.#finishUpgrade(socket, head, s, served(await this.#responseHead(s), s));
    } catch (err) {
      this.#failUpgrade(socket, err, req.headers.host);
      stream?.destroy();
    }
    this.o.traffic?.http(req.headers.host ?? '', socketBytes(socket) - mark);
  };

  /** Writes the tunnel's answer to an upgrade; after a 101, bridges the bytes both ways. */
  async #finishUpgrade(
    socket: Duplex,
    head: Buffer,
    stream: TunnelStream,
    response: { status: number; headers: HeaderPairs },
    upgraded = response.status === 101,
  ): Promise<void> {
    const lines = [`HTTP/1.1 ${response.status} ${response.status === 101 ? 'Switching Protocols' : 'Upgrade Refused'}`];
    for (const [k, v] of response.headers) lines.push(`${k}: ${v}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    this.o.requests?.inc({ status: String(response.status) });
    if (response.status !== 101) {
      // A hook that turned the origin's 101 into a refusal: the origin's side is upgraded already.
      if (upgraded) {
        stream.destroy();
        socket.end();
      } else stream.pipe(socket);
      return;
    }
    if (head.length) stream.write(head);
    await bridge(socket, stream);
  }

  /**
   * `http.handleRequest` on the client's head (absolute URL, headers as sent): the hook's own
   * answer, or the head for the tunnel — the URL's host and path (the Host header follows a
   * changed host), hop-by-hop headers dropped, `X-Forwarded-For` naming `ctx.client`.
   */
  async #requestHooks(conn: HookConnection, req: IncomingMessage, upgrade: boolean): Promise<Hooked> {
    checkHost(req);
    const { host, path, headers } = requestTarget(req);
    const url = `http://${host}${path}`;
    const head = { method: req.method ?? 'GET', url, headers };
    const outcome = await requestHook(this.o.runner, conn, head);
    if ('respond' in outcome) return outcome;
    let target = { host, path };
    if (head.url !== url) {
      const u = new URL(head.url);
      target = { host: u.host, path: `${u.pathname}${u.search}` };
      if (target.host !== host) head.headers = [...head.headers.filter(([k]) => k.toLowerCase() !== 'host'), ['Host', target.host]];
    }
    if (upgrade && outcome.body) conn.log.warn({ hook: 'http.handleRequest', host: target.host }, 'Body rewrite ignored on an upgrade request');
    return { head: tunnelHead(head.method, target.host, target.path, head.headers, conn.client.address, upgrade), body: upgrade ? undefined : outcome.body };
  }

  async #hookedRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const conn = this.#admitting!.connection(req.socket);
    let stream: TunnelStream | undefined;
    const mark = this.o.traffic ? socketBytes(req.socket) : 0;
    res.on('close', () => {
      if (!res.writableFinished) stream?.destroy();
    });
    try {
      const hooked = await this.#requestHooks(conn, req, false);
      if ('respond' in hooked) {
        writeSynthetic(res, hooked.respond);
        req.resume();
        this.o.requests?.inc({ status: String(hooked.respond.status) });
        return;
      }
      let response: { status: number; headers: HeaderPairs };
      let upload: Promise<void> | undefined;
      if (isBodyless(req) && !hooked.body) {
        req.resume();
        ({ stream, response } = await this.#bodylessExchange(hooked.head, (s) => (stream = s)));
      } else {
        const { stream: s } = await this.#openStream('http', hooked.head);
        stream = s;
        upload = pump(rewritten(req, hooked.body), s).catch(() => void s.destroy());
        response = served(await this.#responseHead(s, upload), s);
      }
      const body = await responseHook(this.o.runner, conn, response);
      res.writeHead(response.status, response.headers.flat());
      await pump(rewritten(stream, body), res);
      await upload;
      this.o.requests?.inc({ status: String(response.status) });
    } catch (err) {
      stream?.destroy();
      this.#fail(res, err, conn);
    }
    this.o.traffic?.http(req.headers.host ?? '', socketBytes(req.socket) - mark);
  }

  async #hookedUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const conn = this.#admitting!.connection(socket);
    let stream: TunnelStream | undefined;
    const mark = this.o.traffic ? socketBytes(socket) : 0;
    (socket as Socket).allowHalfOpen = true;
    socket.on('error', () => stream?.destroy());
    req.on('error', () => undefined);
    try {
      const hooked = await this.#requestHooks(conn, req, true);
      if ('respond' in hooked) {
        socket.write(syntheticBytes(hooked.respond, STATUS_CODES[hooked.respond.status] ?? ''));
        closeAfterAnswer(socket as Socket);
        this.o.requests?.inc({ status: String(hooked.respond.status) });
        return;
      }
      const { stream: s } = await this.#openStream('websocket', hooked.head);
      stream = s;
      const response = served(await this.#responseHead(s), s);
      const upgraded = response.status === 101;
      if (await responseHook(this.o.runner, conn, response))
        conn.log.warn({ hook: 'http.handleResponse', host: hooked.head.host }, 'Body rewrite ignored on an upgrade response');
      await this.#finishUpgrade(socket, head, stream, response, upgraded);
    } catch (err) {
      this.#failUpgrade(socket, err, req.headers.host, conn);
      stream?.destroy();
    }
    this.o.traffic?.http(req.headers.host ?? '', socketBytes(socket) - mark);
  }

  /**
   * What a visitor sees when a request failed, and what the log gets: the on-ramp's own refusals
   * as they are; a timeout waiting for the connector a 504; anything else (the stream reset, a
   * hook threw) a 502 that names no internals.
   */
  #failure(err: unknown, host: string | undefined, conn?: HookConnection, what = 'Request'): OnrampError {
    if (conn && err instanceof HookError) this.o.runner.failed(conn, err, `${what} through the tunnel failed`, 'request');
    else if (err instanceof OnrampError) this.o.log.debug({ host, status: err.status, ...err.detail }, err.message);
    else this.o.log.warn({ err, host }, `${what} through the tunnel failed`);
    if (err instanceof OnrampError) return err;
    if (isOxyError(err, 'OXY_ERR_PROTOCOL_TIMEOUT')) return new OnrampError(504, 'http_response_timeout', `The connector for ${host} did not answer in time.`);
    if (err instanceof HookError) return new OnrampError(502, 'proxy_internal_error', 'Bad gateway.');
    return new OnrampError(502, 'destination_unavailable', `The connector for ${host} did not answer.`);
  }

  /** Answers a request that failed (see #failure). */
  #fail(res: ServerResponse, err: unknown, conn?: HookConnection): void {
    const failure = this.#failure(err, res.req.headers.host, conn);
    this.o.requests?.inc({ status: String(failure.status) });
    this.o.traffic?.error(failure.proxyError);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const page = errorPage(failure.status, failure.proxyError, failure.message);
    res.writeHead(page.status, page.headers.flat());
    res.end(page.body);
  }

  #failUpgrade(socket: Duplex, err: unknown, host: string | undefined, conn?: HookConnection): void {
    const failure = this.#failure(err, host, conn, 'Upgrade');
    this.o.requests?.inc({ status: String(failure.status) });
    this.o.traffic?.error(failure.proxyError);
    const page = errorPage(failure.status, failure.proxyError, failure.message);
    let text = `HTTP/1.1 ${page.status} ${STATUS_CODES[page.status] ?? 'Error'}\r\n`;
    for (const [k, v] of page.headers) text += `${k}: ${v}\r\n`;
    socket.write(Buffer.concat([Buffer.from(`${text}connection: close\r\n\r\n`, 'latin1'), page.body]));
    // What the client sent after its upgrade request is dropped, not a reset that loses the page.
    closeAfterAnswer(socket as Socket);
  }
}
