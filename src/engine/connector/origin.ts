/**
 * Off-ramp to origins: the connector hands each proxied request to the service its
 * ingress rule names. HTTP goes through undici with pooled keep-alive connections per
 * origin; bodies stream both ways with backpressure; WebSocket (and other) upgrades hand
 * back the origin socket; tcp:// services get a plain socket.
 */
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { TLSSocket } from 'node:tls';
import { Readable, type Duplex, type Writable } from 'node:stream';
import { Agent, buildConnector, upgrade, type Dispatcher } from 'undici';
import { boundedIdlePools } from './origin-pool.js';
import { revealResets } from '../native/index.js';
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { startHelloWorld, type HelloWorld } from './hello-world.js';
import type { Ingress, IngressRule, OriginRequest } from './ingress.js';
import { HOP_BY_HOP, headerValue, type HeaderPairs, type HttpRequestHead, type HttpResponseHead } from '../protocol/http-head.js';
import { dialErrorType, errorPage, type ProxyErrorType } from '../protocol/proxy-status.js';
import { pump } from '../util/pump.js';
import { destroyWhenTcpGone, TCP_CLOSE, type TcpWatch } from '../native/tcp-info.js';

export interface ProxiedResponse {
  head: HttpResponseHead;
  /** null for no body (HEAD, 204, 304, http_status services). */
  body: Readable | null;
}

export interface UpgradedResponse {
  head: HttpResponseHead;
  socket: Duplex;
}

export const isUpgradeRequest = (head: HttpRequestHead): boolean =>
  /\bupgrade\b/i.test(headerValue(head.headers, 'connection') ?? '') && headerValue(head.headers, 'upgrade') !== undefined;

function forwardHeaders(head: HttpRequestHead, rule: IngressRule): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of head.headers) {
    const key = name.toLowerCase();
    // Node's server already answered `Expect: 100-continue`; undici refuses the header.
    if (HOP_BY_HOP.has(key) || key === 'expect') continue;
    const prev = out[key];
    out[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  if (rule.originRequest.httpHostHeader) out.host = rule.originRequest.httpHostHeader;
  return out;
}

function responsePairs(headers: Record<string, string | string[] | undefined>): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    for (const one of Array.isArray(v) ? v : [v]) pairs.push([k, one]);
  }
  return pairs;
}

const ignore = (): void => undefined;

/** A 502 with its body (a head announcing a length must be followed by that many bytes) and nothing internal: details go to the log. */
function badGateway(error: ProxyErrorType, text: string): ProxiedResponse & { bytes: Buffer } {
  const page = errorPage(502, error, text);
  return { head: { status: page.status, headers: page.headers }, body: Readable.from([page.body]), bytes: page.body };
}

/**
 * One relayed request (OriginProxy.relayHttp) as an undici DispatchHandler: the head, then
 * each chunk written to `out`, pausing the origin while `out` is above its high-water mark.
 */
class RelayHandler implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #started = false;
  #settled = false;
  #noBody = false;

  constructor(
    private readonly out: Writable,
    private readonly writeHead: (head: HttpResponseHead) => void,
    private readonly head: boolean,
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
    private readonly failEarly: (err: Error) => void,
  ) {
    out.once('error', this.#abort);
    out.once('close', this.#abort);
  }

  readonly #abort = (err?: Error): void => {
    if (!this.#settled) this.#controller?.abort(err ?? new OxyError('OXY_ERR_TUNNEL_CLOSED', 'The tunnel stream closed before the response was complete'));
  };

  readonly #resume = (): void => this.#controller?.resume();

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.out.destroyed) this.#abort();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx: informational, the final head follows
    this.#started = true;
    this.#noBody = this.head || statusCode === 204 || statusCode === 304;
    this.writeHead({ status: statusCode, headers: responsePairs(headers) });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#noBody) return;
    if (!this.out.write(chunk)) {
      controller.pause();
      this.out.once('drain', this.#resume);
    }
  }

  onResponseEnd(): void {
    this.#settle();
    this.out.end();
    this.resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.#settled) return;
    this.#settle();
    if (!this.#started && !this.out.destroyed) return this.failEarly(err);
    // The answer is cut: `out` is destroyed with the error, which reaches the caller through
    // reject. The 'error' event that destroy emits needs a listener here (#settle took ours off):
    // without one, an origin failing after its head (killed, reset, GOAWAY) ended the connector.
    this.out.on('error', ignore);
    this.out.destroy(err);
    this.reject(err);
  }

  #settle(): void {
    this.#settled = true;
    this.out.off('error', this.#abort);
    this.out.off('close', this.#abort);
    this.out.off('drain', this.#resume);
  }
}

/** An HTTP rule's origin: its URL, its dispatcher, and (matchSNItoHost) one dispatcher per SNI name. */
interface Target {
  origin: string;
  dispatcher: Dispatcher;
  socketPath?: string;
  tls: boolean;
  /** Least recently used first; at most SNI_DISPATCHERS, the oldest closed (gracefully) on overflow. */
  bySni?: Map<string, Dispatcher>;
}

/** Per-rule bound on matchSNItoHost's dispatchers (one per Host seen): Hosts are client-chosen. */
export const SNI_DISPATCHERS = 64;

/** The name a Host header gives for SNI: no port, no brackets; none for an IP literal (RFC 6066 §3). */
export function sniName(host: string): string | undefined {
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '')).toLowerCase();
  return name === '' || isIP(name) !== 0 ? undefined : name;
}

export class OriginProxy {
  /** Origin URL and dispatcher of each HTTP rule, made on its first request. */
  readonly #targets = new Map<IngressRule, Target>();
  #helloWorld?: HelloWorld;

  constructor(
    readonly ingress: Ingress,
    private readonly log: Logger,
  ) {}

  /** Starts the origins the connector runs itself (hello world). */
  async start(): Promise<void> {
    if (this.ingress.rules.some((r) => r.service.kind === 'hello_world')) this.#helloWorld = await startHelloWorld();
  }

  async close(): Promise<void> {
    const all = [...this.#targets.values()].flatMap((t) => [t.dispatcher, ...(t.bySni?.values() ?? [])]);
    await Promise.all(all.map((d) => d.close().catch(() => undefined)));
    this.#targets.clear();
    await this.#helloWorld?.close();
  }

  /** One request to a rule's origin, as proxyHttp and relayHttp send it. */
  #request(rule: IngressRule, head: HttpRequestHead, body: Readable | null): { dispatcher: Dispatcher; options: Dispatcher.DispatchOptions } {
    const { origin, dispatcher, servername } = this.#target(rule, head);
    const options = {
      origin,
      ...sniOption(servername),
      path: head.path,
      method: head.method as Dispatcher.HttpMethod,
      headers: forwardHeaders(head, rule),
      body: body ?? undefined,
      headersTimeout: 0,
      bodyTimeout: 0,
    };
    return { dispatcher, options };
  }

  /** A request the origin did not take: logged, and the 502 page its client gets. */
  #unreachable(rule: IngressRule, head: HttpRequestHead, err: unknown): ProxiedResponse & { bytes: Buffer } {
    this.log.error({ err, originService: rule.serviceText, path: head.path }, 'Request failed');
    return badGateway(dialErrorType(err), `The origin for ${head.host} is not reachable right now.`);
  }

  /**
   * Where an HTTP rule sends a request: the origin URL plus a dispatcher made with the rule's
   * options — with matchSNItoHost on a TLS origin, one whose SNI is the Host the origin gets
   * (cloudflared sets it on a shared transport per request, a race between hosts; a dispatcher
   * per name cannot mix them up).
   */
  #target(rule: IngressRule, head: HttpRequestHead): { origin: string; dispatcher: Dispatcher; servername: string } {
    let target = this.#targets.get(rule);
    if (!target) {
      target = this.#newTarget(rule);
      this.#targets.set(rule, target);
    }
    const o = rule.originRequest;
    const name = o.matchSNItoHost && target.tls ? sniName(o.httpHostHeader ?? headerValue(head.headers, 'host') ?? head.host) : undefined;
    if (!name) return { origin: target.origin, dispatcher: target.dispatcher, servername: requestServername(target.origin, o) };
    target.bySni ??= new Map();
    let dispatcher = target.bySni.get(name);
    if (dispatcher)
      target.bySni.delete(name); // re-inserted below: most recently used last
    else {
      dispatcher = createDispatcher(target.origin, { ...o, originServerName: name }, target.socketPath);
      if (target.bySni.size >= SNI_DISPATCHERS) {
        const [oldest, old] = target.bySni.entries().next().value!;
        target.bySni.delete(oldest);
        void old.close().catch(() => undefined); // in-flight requests finish first
      }
    }
    target.bySni.set(name, dispatcher);
    return { origin: target.origin, dispatcher, servername: name };
  }

  #newTarget(rule: IngressRule): Target {
    const s = rule.service;
    let origin: string;
    let socketPath: string | undefined;
    if (s.kind === 'http') origin = s.url.origin.replace(/^ws/, 'http');
    else if (s.kind === 'hello_world') origin = this.#helloWorld!.url;
    else if (s.kind === 'unix') {
      origin = s.tls ? 'https://localhost' : 'http://localhost';
      socketPath = s.path;
    } else throw new OxyError('OXY_ERR_INTERNAL', `rule #${rule.index} is not an HTTP service`);
    return { origin, socketPath, tls: origin.startsWith('https:'), dispatcher: createDispatcher(origin, rule.originRequest, socketPath) };
  }

  /** `signal`: an AbortSignal, or an EventEmitter that emits 'abort' (as undici takes). */
  async proxyHttp(rule: IngressRule, head: HttpRequestHead, body: Readable | null, signal?: Dispatcher.RequestOptions['signal']): Promise<ProxiedResponse> {
    const s = rule.service;
    if (s.kind === 'http_status') return { head: { status: s.status, headers: [['content-length', '0']] }, body: null };
    if (s.kind === 'tcp' || s.kind === 'bastion' || s.kind === 'socks') {
      this.log.warn({ originService: rule.serviceText, rule: rule.index, host: head.host }, 'An HTTP request matched a rule whose service takes TCP streams');
      return badGateway('destination_unavailable', `${head.host} does not serve HTTP.`);
    }
    const { dispatcher, options } = this.#request(rule, head, body);
    try {
      const res = await dispatcher.request({ ...options, signal });
      const noBody = head.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304;
      if (noBody) res.body.resume();
      return { head: { status: res.statusCode, headers: responsePairs(res.headers) }, body: noBody ? null : res.body };
    } catch (err) {
      return this.#unreachable(rule, head, err);
    }
  }

  /**
   * proxyHttp for the connector's per-request path: the answer streams into `out` as it
   * arrives — `writeHead` gets the origin's head (or a 502), then the body follows with
   * backpressure — through undici's dispatch API, so there is no response stream object, no
   * pipe and no promise per step (~10 µs of CPU less per small request than request() and a
   * pipe). Resolves once `out` is ended; an origin failing after its head rejects, with
   * `out` destroyed. `out` erroring or closing first aborts the origin request.
   */
  relayHttp(rule: IngressRule, head: HttpRequestHead, body: Readable | null, out: Writable, writeHead: (head: HttpResponseHead) => void): Promise<void> {
    const kind = rule.service.kind;
    if (kind !== 'http' && kind !== 'unix' && kind !== 'hello_world') {
      return this.proxyHttp(rule, head, body).then((res) => {
        writeHead(res.head);
        return res.body ? pump(res.body, out) : void out.end();
      });
    }
    const { dispatcher, options } = this.#request(rule, head, body);
    return new Promise((resolve, reject) => {
      const failEarly = (err: Error): void => {
        const page = this.#unreachable(rule, head, err);
        writeHead(page.head);
        out.end(page.bytes);
        resolve();
      };
      const handler = new RelayHandler(out, writeHead, head.method === 'HEAD', resolve, reject, failEarly);
      try {
        dispatcher.dispatch(options, handler);
      } catch (err) {
        handler.onResponseError(undefined, err as Error);
      }
    });
  }

  /** A request asking to upgrade (WebSocket): the origin's 101 head and its socket, or a 502. */
  async proxyUpgrade(rule: IngressRule, head: HttpRequestHead): Promise<UpgradedResponse | ProxiedResponse> {
    if (rule.service.kind !== 'http' && rule.service.kind !== 'unix' && rule.service.kind !== 'hello_world') return this.proxyHttp(rule, head, null);
    const { origin, dispatcher, servername } = this.#target(rule, head);
    try {
      const res = await upgrade(new URL(head.path, origin), {
        dispatcher,
        ...sniOption(servername),
        method: head.method as Dispatcher.HttpMethod,
        headers: forwardHeaders(head, rule),
        protocol: headerValue(head.headers, 'upgrade') ?? 'websocket',
      });
      const headers = responsePairs(res.headers as Record<string, string | string[]>);
      headers.push(['connection', 'Upgrade'], ['upgrade', headerValue(head.headers, 'upgrade') ?? 'websocket']);
      return { head: { status: 101, headers }, socket: res.socket };
    } catch (err) {
      this.log.error({ err, originService: rule.serviceText, path: head.path }, 'Upgrade failed');
      return badGateway(dialErrorType(err), `The origin for ${head.host} did not accept the upgrade.`);
    }
  }

  /**
   * A TCP stream for a rule: its tcp:// (ssh://, …) service, or `to` — the destination a
   * bastion or SOCKS stream names — with the rule's timeouts.
   */
  dialTcp(rule: IngressRule, to?: { host: string; port: number }): Promise<Socket> {
    const s = rule.service;
    const dest = to ?? (s.kind === 'tcp' ? s : undefined);
    if (!dest) return Promise.reject(new OxyError('OXY_ERR_INTERNAL', `rule #${rule.index} is not a TCP service`));
    if (!dest.port)
      return Promise.reject(
        new OxyError('OXY_ERR_ORIGIN_ADDRESS', `${rule.serviceText} has no port, and ${s.kind === 'tcp' ? `${s.scheme}://` : 'it'} has no default one`),
      );
    const o = rule.originRequest;
    return dialTcp(dest.host, dest.port, o.connectTimeoutMs, o.tcpKeepAliveMs, !o.noHappyEyeballs);
  }
}

export function dialTcp(host: string, port: number, timeoutMs: number, keepAliveMs: number, happyEyeballs = true): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Half-open: the origin's FIN ends one direction only; the client may still be sending.
    const socket = netConnect({
      host,
      port,
      noDelay: true,
      allowHalfOpen: true,
      keepAlive: keepAliveMs > 0,
      keepAliveInitialDelay: keepAliveMs,
      autoSelectFamily: happyEyeballs,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new OxyError('OXY_ERR_ORIGIN_TIMEOUT', `dial tcp ${host}:${port}: i/o timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    // The origin's reset is the flow's reset, also when its bytes were still unread.
    revealResets(socket);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.on('error', () => undefined); // the bridge handles errors while it runs; none may crash after
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * The TLS name a dispatcher's connections send, whatever the request's Host: undici otherwise
 * takes SNI from each request's Host header — over originServerName, and re-dialling whenever
 * consecutive requests' Hosts differ. cloudflared (Go) sends originServerName, else the origin
 * URL's host name, else none (an IP address); matchSNItoHost asks for the Host (a dispatcher per name).
 */
function pinnedSni(connect: buildConnector.BuildOptions, sni: string | undefined): buildConnector.connector {
  const base = buildConnector({ ...connect, servername: sni });
  return (opts, callback) =>
    base({ ...opts, servername: undefined }, (...args: Parameters<buildConnector.Callback>) => {
      const socket = args[1];
      if (socket instanceof TLSSocket && socket.alpnProtocol === 'h2') destroyWhenTcpGone(socket, H2_ORIGIN_WATCH);
      callback(...args);
    });
}

/**
 * An HTTP/2 origin's TLS socket whose TCP connection was reset (an origin killed while the
 * connector sent it request bodies) is destroyed within a second: its session otherwise waits
 * for good on the failed write (nodejs/node#61304), its uploads never end and undici keeps it.
 * Only a reset (CLOSE): after a FIN the session still reads what the origin sent before it.
 */
const H2_ORIGIN_WATCH: TcpWatch = { everyMs: 1000, busy: () => true, gone: (state) => state === TCP_CLOSE };

/** undici reads a request's `servername` (core/request.js) but does not declare it in its option types. */
const sniOption = (servername: string): object => ({ servername });

/** What requests pass as `servername`: constant per dispatcher, so undici never re-dials for it (pinnedSni drops it). */
export const requestServername = (origin: string, o: OriginRequest): string => o.originServerName ?? new URL(origin).hostname;

function createDispatcher(origin: string, o: OriginRequest, socketPath?: string): Dispatcher {
  const connect = {
    timeout: o.connectTimeoutMs,
    rejectUnauthorized: !o.noTLSVerify,
    ca: o.caPool ? readFileSync(o.caPool) : undefined,
    keepAlive: o.tcpKeepAliveMs > 0,
    keepAliveInitialDelay: o.tcpKeepAliveMs,
    autoSelectFamily: !o.noHappyEyeballs,
    socketPath,
    // ALPN offers h2 only when the connector is told so: undici's allowH2 below does not reach a connector built here.
    allowH2: o.http2Origin,
  };
  // keepAliveConnections bounds idle connections (origin-pool.ts), never concurrency: undici's
  // pools stay unbounded (a cap here queued every request past the 100th, e.g. SSE streams).
  const pools = boundedIdlePools(o.keepAliveConnections);
  const options = {
    connect: pinnedSni(connect, o.originServerName ?? sniName(new URL(origin).host)),
    connections: null,
    // Idle for keepAliveTimeout at most, whatever Keep-Alive hint the origin sends.
    keepAliveTimeout: o.keepAliveTimeoutMs,
    keepAliveMaxTimeout: o.keepAliveTimeoutMs,
    allowH2: o.http2Origin,
  };
  return socketPath ? pools.poolFactory(origin, options) : new Agent({ ...options, factory: pools.poolFactory as (origin: URL, opts: object) => Dispatcher });
}
