/**
 * The HTTP forward-proxy on-ramp (`oxyctl edge run --proxy-listen HOST:PORT`):
 * `CONNECT host:port` tunnels, and absolute-form requests (`GET http://host/path`).
 *
 * Egress is the shared egress pipeline (edge/pipeline/egress.ts): by default through the tunnel
 * whose route covers the destination IP in the client's vnet, else directly from the
 * edge host. The client's vnet is the store's default unless the request carries an
 * `Oxy-Vnet: <name or ID>` header (CONNECT requests and absolute-form requests alike; the
 * header is not forwarded) or a hook sets `ctx.vnet` (e.g. from `Proxy-Authorization`).
 *
 * Per connection, hooks fire in the order of HOOK_ORDER['connect-proxy'] (hooks/order.ts):
 * newCtx → proxyProtocol.handleConnection → ingress.handleConnection →
 * http.handleProxyConnectRequest → egress (dns, upstream IPs, decision, connect,
 * established) → http.handleProxyConnectResponse → tunnel.shouldInterceptHttps →
 * tunnel.appTunnelPipeline (or the engine's splice) → ingress.handleConnectionClose.
 *
 * Failures answer with a status and an RFC 9209 `Proxy-Status` header
 * (`oxyctl; error=destination_ip_prohibited`, …). A hook that throws fails only its
 * connection (502, `error=proxy_internal_error`) and is named in the log line.
 */
import { request as httpRequest, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../observe/log.js';
import { Egress, EgressError, type ProxyErrorType } from './pipeline/egress.js';
import { requestHook, responseHook, rewritten, writeSynthetic } from './pipeline/http.js';
import { HookError, type HookConnection, type HookRunner } from '../hooks/runner.js';
import { runTunnel } from './pipeline/intercept.js';
import type { ConnectResponse, EstablishedInfo, HookContext, VirtualNetwork } from '../hooks/types.js';
import { pairsFromRaw as pairs } from '../protocol/http-head.js';
import { AdmittingListener } from './pipeline/admission.js';
import { createHttpServer, type HttpTimeouts } from '../util/http-server.js';
import { closeAfterAnswer } from '../util/linger.js';
import type { TrafficRecorder } from './traffic.js';
import { proxyGuard, refusesEverything, type AllowEntry } from './proxy-policy.js';
import { hostPort, type EgressGuard } from './pipeline/egress.js';
import { socketBytes } from '../native/splice.js';

export interface ConnectProxyOptions {
  /** HOST:PORT to listen on (port 0: any). */
  listen: string;
  /** Share the address with the edge's other workers (SO_REUSEPORT). */
  reusePort?: boolean;
  runner: HookRunner;
  egress: Egress;
  log: Logger;
  /** Every connection starts with a PROXY protocol v1/v2 header (from a load balancer in front). */
  proxyProtocol?: boolean;
  /** Name in Proxy-Status headers. Default `oxyctl`. */
  proxyName?: string;
  /** Client-side timeouts (defaults: HTTP_TIMEOUTS). */
  timeouts?: Partial<HttpTimeouts>;
  traffic?: TrafficRecorder;
  /** `--proxy-allow`: the destinations the proxy may connect to (proxy-policy.ts). Without it and without hooks that decide, none. */
  allow?: AllowEntry[];
  /** TCP ports the edge itself listens on: never a destination on this host. */
  ownPorts?: () => number[];
  /** The edge's one vnet resolver (StoreView.vnet): `Oxy-Vnet` names a vnet, none means the default. */
  vnets?: (ref: string | undefined) => VirtualNetwork | undefined;
}

/**
 * The runner implements a hook that decides who may connect or where to: the app owns the
 * proxy's policy. Not `http.handleRequest` alone: the public listener shares it, and an app that
 * rewrites requests to its hostnames has not thereby opened a proxy.
 */
const hooksDecide = (r: HookRunner): boolean =>
  Boolean(r.ingressConnection || r.proxyHeader || r.connectRequest || r.egressConnection || r.tcpConnect || r.upstreamIps || r.dnsResolve);

/** Hop-by-hop headers a proxy does not forward (RFC 9110 §7.6.1), plus our own. */
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'oxy-vnet',
]);

const headerOf = (h: [string, string][], name: string): string | undefined => h.find(([k]) => k.toLowerCase() === name)?.[1];

const STATUS_TEXT: Record<number, string> = {
  200: 'Connection Established',
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
};

/** Splits a CONNECT authority (`host:port`, `[v6]:port`). */
export function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/\s]+)):(\d{1,5})$/.exec(authority);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port === 0 || port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

export class ConnectProxy {
  readonly #listener: AdmittingListener;
  readonly #http: HttpServer;
  readonly #name: string;
  readonly #guard: EgressGuard;
  /** Set when the proxy allows nothing: every request is refused before DNS or hooks' egress. */
  readonly #closed?: EgressError;

  private constructor(private readonly o: ConnectProxyOptions) {
    this.#name = o.proxyName ?? 'oxyctl';
    const policy = { allow: o.allow, hooks: hooksDecide(o.runner), ownPorts: () => [this.address.port, ...(o.ownPorts?.() ?? [])] };
    this.#guard = proxyGuard(policy);
    this.#closed = refusesEverything(policy);
    this.#http = createHttpServer((req, res) => void this.#request(req, res), o.timeouts);
    this.#http.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.#connect(req, socket as Socket, head));
    this.#listener = new AdmittingListener(this.#http, { runner: o.runner, onramp: 'connect-proxy', log: o.log, proxyProtocol: o.proxyProtocol });
  }

  static async listen(o: ConnectProxyOptions): Promise<ConnectProxy> {
    const proxy = new ConnectProxy(o);
    await proxy.#listener.listen(o.listen, { reusePort: o.reusePort });
    return proxy;
  }

  get address(): AddressInfo {
    return this.#listener.address;
  }

  close(): Promise<void> {
    return this.#listener.close();
  }

  #errorHead(status: number, error: ProxyErrorType, details: string): ConnectResponse {
    this.o.traffic?.error(error);
    const headers: [string, string][] = [
      ['Proxy-Status', `${this.#name}; error=${error}; details=${JSON.stringify(details.replace(/[^\x20-\x7e]/g, ' '))}`],
      ['Content-Length', '0'],
      ['Connection', 'close'],
    ];
    return { status, statusText: STATUS_TEXT[status] ?? 'Error', headers };
  }

  /** The client's vnet (`Oxy-Vnet`, else the default), resolved once onto the connection; the refusal text for an unknown one. */
  #resolveVnet(conn: HookConnection, headers: [string, string][]): string | undefined {
    const named = headerOf(headers, 'oxy-vnet');
    const vnet = this.o.vnets?.(named);
    if (named && !vnet)
      return `virtual network ${named} not found (Oxy-Vnet header): name one of the edge's virtual networks, or send no Oxy-Vnet for the default`;
    conn.vnet = vnet;
    return undefined;
  }

  #writeHead(socket: Duplex, res: ConnectResponse): void {
    let text = `HTTP/1.1 ${res.status} ${res.statusText}\r\n`;
    for (const [k, v] of res.headers) text += `${k}: ${v}\r\n`;
    socket.write(`${text}\r\n`);
  }

  async #connect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const r = this.o.runner;
    const conn = this.#listener.connection(socket);
    const ctx = conn as HookContext<unknown>;
    const authority = req.url ?? '';
    const target = parseAuthority(authority);
    if (!target) {
      this.#writeHead(socket, this.#errorHead(400, 'destination_unavailable', `CONNECT needs host:port, not ${authority}`));
      closeAfterAnswer(socket);
      return;
    }
    const headers = pairs(req.rawHeaders);
    const vnetError = this.#resolveVnet(conn, headers);
    if (vnetError) {
      this.#writeHead(socket, this.#errorHead(400, 'destination_not_found', vnetError));
      closeAfterAnswer(socket);
      return;
    }
    let upstream: Duplex | undefined;
    let info: EstablishedInfo | undefined;
    try {
      if (r.connectRequest) {
        const directive = await r.call(
          conn,
          'http.handleProxyConnectRequest',
          r.connectRequest,
          { authority, host: target.host, port: target.port, headers },
          ctx,
        );
        if (directive?.action === 'block') {
          const status = directive.status ?? 403;
          this.#writeHead(socket, this.#errorHead(status, 'destination_ip_prohibited', directive.reason ?? 'refused by the proxy'));
          closeAfterAnswer(socket);
          return;
        }
      }
      let res: ConnectResponse;
      try {
        if (this.#closed) throw this.#closed;
        ({ socket: upstream, info } = await this.o.egress.connectTcp(conn, target.host, target.port, undefined, this.#guard));
        res = { status: 200, statusText: 'Connection Established', headers: [] };
      } catch (err) {
        if (!(err instanceof EgressError)) throw err;
        conn.log.info({ target: authority, code: err.code, reason: err.message }, 'CONNECT refused');
        res = this.#errorHead(err.status, err.proxyError, err.message);
      }
      if (r.connectResponse) await r.call(conn, 'http.handleProxyConnectResponse', r.connectResponse, res, ctx);
      if (socket.destroyed) {
        upstream?.destroy();
        return;
      }
      this.#writeHead(socket, res);
      if (!upstream || res.status < 200 || res.status > 299) {
        upstream?.destroy();
        closeAfterAnswer(socket);
        return;
      }
      this.#logTunnel(conn, socket, authority, info!);
      await this.#tunnel(conn, socket, upstream, head, { address: target.host, port: target.port });
    } catch (err) {
      r.failed(conn, err, 'CONNECT failed');
      upstream?.destroy();
      if (err instanceof HookError && socket.writable && !upstream) {
        this.#writeHead(socket, this.#errorHead(502, 'proxy_internal_error', `hook ${err.hook} failed`));
        closeAfterAnswer(socket);
      } else socket.destroy();
    }
  }

  /** Every accepted CONNECT is logged once it ends: who, where to, how much and how long. */
  #logTunnel(conn: HookConnection, socket: Socket, destination: string, info: EstablishedInfo): void {
    const started = Date.now();
    const before = socketBytes(socket);
    socket.once('close', () => {
      const after = socketBytes(socket);
      conn.log.info(
        {
          client: hostPort(conn.client),
          destination,
          upstream: hostPort(info.upstream),
          via: info.via,
          bytesIn: after.read - before.read,
          bytesOut: after.written - before.written,
          durationMs: Date.now() - started,
          proxyStatus: `${this.#name}; next-hop="${hostPort(info.upstream)}"`,
        },
        'CONNECT',
      );
    });
  }

  /** After the 200: intercept decision, then the app's pipeline or the engine's splice. */
  async #tunnel(conn: HookConnection, client: Socket, upstream: Duplex, head: Buffer, target: { address: string; port: number }): Promise<void> {
    // Bytes that came with the CONNECT request are the client's first.
    if (head.length) client.unshift(head);
    await runTunnel(this.o.runner, conn, client, upstream, target, { kernelSplice: true });
  }

  /** An absolute-form request (`GET http://host/path`): forwarded with one upstream connection. */
  async #request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const r = this.o.runner;
    const conn = this.#listener.connection(req.socket);
    conn.traced = 'http-proxy';
    let upstream: Duplex | undefined;
    try {
      if (!/^http:\/\//i.test(req.url ?? '')) {
        return this.#answer(
          res,
          400,
          'destination_unavailable',
          'This is a forward proxy: send CONNECT host:port or absolute-form requests (GET http://host/path)',
        );
      }
      const headers = pairs(req.rawHeaders);
      const vnetError = this.#resolveVnet(conn, headers);
      if (vnetError) return this.#answer(res, 400, 'destination_not_found', vnetError);
      const head = { method: req.method ?? 'GET', url: req.url!, headers };
      const original = new URL(head.url);
      const outcome = await requestHook(r, conn, head);
      if ('respond' in outcome) {
        writeSynthetic(res, outcome.respond);
        req.resume();
        return;
      }
      const url = new URL(head.url);
      const port = Number(url.port || 80);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      let out = head.headers.filter(([k]) => !HOP.has(k.toLowerCase()));
      if (url.host !== original.host) out = [...out.filter(([k]) => k.toLowerCase() !== 'host'), ['Host', url.host]];
      out.push(['Connection', 'close']);
      try {
        if (this.#closed) throw this.#closed;
        upstream = (await this.o.egress.connectTcp(conn, host, port, undefined, this.#guard)).socket;
      } catch (err) {
        if (!(err instanceof EgressError)) throw err;
        conn.log.info({ target: `${host}:${port}`, code: err.code, reason: err.message }, 'Proxy request refused');
        return this.#answer(res, err.status, err.proxyError, err.message);
      }
      const sock = upstream;
      const outgoing = httpRequest({
        method: head.method,
        path: `${url.pathname}${url.search}`,
        headers: out.flat(),
        createConnection: () => sock as Socket,
        setHost: false,
      });
      outgoing.on('error', () => upstream?.destroy());
      // Settled here: a failed upload (the client went away) must not surface as an unhandled rejection.
      const upload = pipeline(rewritten(req, outcome.body), outgoing).catch(() => upstream?.destroy());
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        outgoing.once('response', resolve);
        outgoing.once('error', reject);
      });
      response.on('error', () => undefined);
      const resHead = { status: response.statusCode ?? 502, headers: pairs(response.rawHeaders).filter(([k]) => !HOP.has(k.toLowerCase())) };
      const bodyOut = await responseHook(r, conn, resHead);
      res.writeHead(resHead.status, resHead.headers.flat());
      await pipeline(rewritten(response, bodyOut), res);
      await upload;
    } catch (err) {
      r.failed(conn, err, 'Proxy request failed', 'request');
      upstream?.destroy();
      if (!res.headersSent) this.#answer(res, 502, 'proxy_internal_error', err instanceof HookError ? `hook ${err.hook} failed` : 'upstream failed');
      else res.destroy();
    }
  }

  #answer(res: ServerResponse, status: number, error: ProxyErrorType, details: string): void {
    this.o.traffic?.error(error);
    const body = `${details}\n`;
    res.writeHead(status, {
      'proxy-status': `${this.#name}; error=${error}; details=${JSON.stringify(details.replace(/[^\x20-\x7e]/g, ' '))}`,
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }
}

/** The client's first bytes after the 200 (the ClientHello of a TLS client); undefined if it ended first. */
