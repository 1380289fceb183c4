/**
 * What the connector does with each stream the edge opens: read its header, pick the
 * ingress rule by Host and path, and off-ramp — an HTTP request to the origin, an upgrade
 * bridged to the origin's socket (or raw bytes to a tcp:// service), answering with a
 * response header first. Streams are counted so a graceful stop can wait for them.
 */
import { PassThrough } from 'node:stream';
import { bridge, pump } from '../util/pump.js';
import type { Logger } from '../observe/log.js';
import { decodeRequestHead, encodeResponseHead, headerValue, type HttpRequestHead, type HttpResponseHead } from '../protocol/http-head.js';
import { dialErrorType, errorPage } from '../protocol/proxy-status.js';
import { readStreamHeader, ResponseStatus, writeResponseHeader, type StreamRequestHeader } from '../protocol/stream-header.js';
import type { TunnelConnection, TunnelStream } from '../transport/types.js';
import type { OriginProxy } from './origin.js';
import { Http1StreamServer } from './http1-stream.js';
import { checkDestination, socksHandshake } from './socks.js';
import type { ConnectorMetrics } from './metrics.js';

/** Extra stream kinds (tcp/udp/ip-packets to private networks) plug in here. */
export type KindHandler = (header: StreamRequestHeader, stream: TunnelStream, conn?: TunnelConnection) => Promise<void>;

export class StreamHandler {
  #active = 0;
  #idle?: () => void;
  #accepting = true;
  /** http1 streams being served: their pumps stop routing heads natively when the connector stops. */
  readonly #http1 = new Set<Http1StreamServer>();

  constructor(
    private readonly origins: OriginProxy,
    private readonly log: Logger,
    private readonly extraKinds: Partial<Record<StreamRequestHeader['kind'], KindHandler>> = {},
    /** cloudflared's request metrics (connector/metrics.ts); none in tests that do not need them. */
    private readonly metrics?: ConnectorMetrics,
  ) {}

  get accepting(): boolean {
    return this.#accepting;
  }

  /** False: new requests are refused (each http1 stream ends at its next request). */
  set accepting(value: boolean) {
    this.#accepting = value;
    if (!value) for (const server of this.#http1) server.stopRouting();
  }

  get active(): number {
    return this.#active;
  }

  /** Resolves when no stream is in flight (or at once). */
  idle(): Promise<void> {
    return this.#active === 0 ? Promise.resolve() : new Promise((resolve) => (this.#idle = resolve));
  }

  readonly handle = (stream: TunnelStream, conn?: TunnelConnection): void => {
    this.#active++;
    stream.on('error', ignore);
    // One promise reaction per stream (this runs for every proxied request).
    this.#serve(stream, conn).then(
      () => this.#served(stream),
      (err) => {
        this.log.debug({ err }, 'stream ended with an error');
        stream.destroy();
        this.#served(stream);
      },
    );
  };

  /**
   * A stream counts as in flight until the transport closed it (at most CLOSE_WAIT_MS more):
   * its last bytes and end must reach the edge before a graceful stop closes the connection.
   */
  #served(stream: TunnelStream): void {
    if (stream.closed) return this.#release();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      this.#release();
    };
    const timer = setTimeout(release, CLOSE_WAIT_MS).unref();
    stream.once('close', release);
  }

  #release(): void {
    if (--this.#active === 0) this.#idle?.();
  }

  async #serve(stream: TunnelStream, conn?: TunnelConnection): Promise<void> {
    const header = await readStreamHeader(stream, { expect: 'request', timeoutMs: 30_000 });
    if (!this.accepting) {
      // An http1 stream has no response header: ended unread, its request is sent again elsewhere.
      if (header.kind === 'http1') stream.end();
      else refuse(stream, ResponseStatus.FORBIDDEN, 'The connector is shutting down');
      return;
    }
    if (header.kind === 'http') return this.#http(stream, decodeRequestHead(header.metadata));
    if (header.kind === 'websocket') return this.#upgrade(stream, decodeRequestHead(header.metadata));
    if (header.kind === 'http1') {
      const server = new Http1StreamServer(stream, this.origins, this.log, () => this.#accepting, this.metrics);
      this.#http1.add(server);
      await server.done;
      this.#http1.delete(server);
      return;
    }
    const extra = this.extraKinds[header.kind];
    if (extra) return extra(header, stream, conn);
    refuse(stream, ResponseStatus.BAD_REQUEST, `This connector does not serve '${header.kind}' streams`);
  }

  async #http(stream: TunnelStream, head: HttpRequestHead): Promise<void> {
    const rule = this.origins.ingress.match(head.host, pathOnly(head.path));
    const length = headerValue(head.headers, 'content-length');
    const hasBody = length !== undefined ? length !== '0' : headerValue(head.headers, 'transfer-encoding') !== undefined || !BODYLESS_METHODS.has(head.method);
    // undici destroys a request body once consumed; the stream must outlive it for the response.
    const upload = hasBody ? stream.pipe(new PassThrough()) : null;
    if (!hasBody) stream.resume();
    // A reset (the client went away) errors the stream, which aborts the origin request.
    const m = this.metrics;
    if (!m) return this.origins.relayHttp(rule, head, upload, stream, (resHead) => respond(stream, resHead));
    m.requestStarted();
    try {
      await this.origins.relayHttp(rule, head, upload, stream, (resHead) => {
        m.responded(resHead);
        respond(stream, resHead);
      });
    } finally {
      m.requestEnded();
    }
  }

  async #upgrade(stream: TunnelStream, head: HttpRequestHead): Promise<void> {
    const rule = this.origins.ingress.match(head.host, pathOnly(head.path));
    const kind = rule.service.kind;
    if (kind === 'socks' || (kind === 'tcp' && rule.originRequest.proxyType === 'socks')) {
      // SOCKS5 after the 101: the client names each destination; ipRules decide (socks.ts).
      respond(stream, {
        status: 101,
        headers: [
          ['connection', 'Upgrade'],
          ['upgrade', headerValue(head.headers, 'upgrade') ?? 'tcp'],
        ],
      });
      const socket = await socksHandshake(stream, rule.originRequest.ipRules, (host, port) => this.origins.dialTcp(rule, { host, port }), this.log);
      return socket ? bridge(stream, socket) : undefined;
    }
    if (kind === 'tcp' || kind === 'bastion') {
      // Raw bytes after the 101: the client bridges a local TCP connection (oxyctl access tcp).
      // A bastion dials what the request names, as cloudflared's Cf-Access-Jump-Destination.
      let jump = kind === 'bastion' ? bastionDestination(head) : undefined;
      // A bastion's ipRules bound where clients may jump, as they bound a socks-proxy.
      if (jump && !(jump instanceof Error)) {
        const checked = await checkDestination(jump.host, jump.port, rule.originRequest.ipRules);
        if ('refused' in checked) {
          const page =
            checked.refused === 'policy'
              ? errorPage(403, 'destination_ip_prohibited', `${jump.host}:${jump.port} is not allowed by this bastion's ipRules.`)
              : errorPage(502, 'dns_error', `${jump.host} does not resolve.`);
          respond(stream, page);
          stream.end(page.body);
          return;
        }
        jump = { host: checked.ip, port: jump.port };
      }
      const socket = await (jump instanceof Error ? Promise.resolve(jump) : this.origins.dialTcp(rule, jump).catch((err: Error) => err));
      if (socket instanceof Error) {
        if (jump instanceof Error) {
          const page = errorPage(400, 'http_request_error', jump.message);
          respond(stream, page);
          stream.end(page.body);
          return;
        }
        this.log.error({ err: socket, originService: rule.serviceText }, 'Unable to reach the TCP origin');
        const page = errorPage(502, dialErrorType(socket), `The origin for ${head.host} is not reachable right now.`);
        respond(stream, page);
        stream.end(page.body);
        return;
      }
      respond(stream, {
        status: 101,
        headers: [
          ['connection', 'Upgrade'],
          ['upgrade', headerValue(head.headers, 'upgrade') ?? 'tcp'],
        ],
      });
      return bridge(stream, socket);
    }
    const upgraded = await this.origins.proxyUpgrade(rule, head);
    respond(stream, upgraded.head);
    if ('socket' in upgraded) return bridge(stream, upgraded.socket);
    if (upgraded.body) await pump(upgraded.body, stream);
    else stream.end();
  }
}

/** cloudflared's bastion header: the destination as HOST:PORT or a URL (carrier.ResolveBastionDest). */
export const JUMP_DESTINATION_HEADER = 'cf-access-jump-destination';

function bastionDestination(head: HttpRequestHead): { host: string; port: number } | Error {
  const raw = headerValue(head.headers, JUMP_DESTINATION_HEADER);
  if (!raw) return new Error(`A bastion needs the ${JUMP_DESTINATION_HEADER} header naming HOST:PORT`);
  try {
    const url = new URL(raw.includes('://') ? raw : `tcp://${raw}`);
    if (url.hostname && url.port) return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) };
  } catch {
    // fall through
  }
  return new Error(`${JUMP_DESTINATION_HEADER}: ${raw} is not HOST:PORT`);
}

/** Methods whose requests carry no body unless a Content-Length or Transfer-Encoding says so. */
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);

/** How long a served stream may take to be closed by its transport before it stops counting. */
const CLOSE_WAIT_MS = 2000;

const ignore = (): void => undefined;

/** The path of a request target without its query, for ingress matching. */
const pathOnly = (target: string): string => {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
};

function respond(stream: TunnelStream, head: HttpResponseHead): void {
  writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: encodeResponseHead(head) });
}

function refuse(stream: TunnelStream, status: number, message: string): void {
  writeResponseHeader(stream, { status, message, metadata: [] });
  stream.end();
}

export { bridge };
