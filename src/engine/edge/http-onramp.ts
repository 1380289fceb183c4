/**
 * The public HTTP on-ramp: requests whose Host names a public hostname (`tunnel route
 * dns`) travel as `http` streams to a connector of that tunnel; upgrades (WebSocket, and
 * raw `Upgrade: tcp` for tcp:// services) as `websocket` streams whose bytes are piped both
 * ways after the 101. Bodies stream with backpressure in both directions.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Counter } from 'prom-client';
import { bridge, pump } from '../util/pump.js';
import type { Logger } from '../observe/log.js';
import { HOP_BY_HOP, decodeResponseHead, encodeRequestHead, pairsFromRaw, type HttpRequestHead } from '../protocol/http-head.js';
import { readStreamHeader, ResponseStatus, writeRequestHeader, type StreamKind } from '../protocol/stream-header.js';
import type { TunnelStream } from '../transport/types.js';
import type { TunnelRegistry } from './registry.js';
import type { StoreView } from './store-view.js';

export interface HttpOnrampOptions {
  view: StoreView;
  registry: TunnelRegistry;
  log: Logger;
  requests?: Counter<'status'>;
  /** Quick tunnel: the tunnel that serves every host without a hostname route. */
  defaultTunnel?: string;
  /** How long to wait for the connector's response head. */
  responseTimeoutMs?: number;
}

class OnrampError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function requestHead(req: IncomingMessage): HttpRequestHead {
  const headers = pairsFromRaw(req.rawHeaders).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()) || req.headers.upgrade !== undefined);
  const client = req.socket.remoteAddress ?? '';
  const xff = req.headers['x-forwarded-for'];
  const forwarded = headers.filter(([k]) => !/^x-forwarded-(for|proto)$/i.test(k));
  forwarded.push(['X-Forwarded-For', xff ? `${xff}, ${client}` : client], ['X-Forwarded-Proto', 'http']);
  return { method: req.method ?? 'GET', host: req.headers.host ?? '', path: req.url ?? '/', headers: forwarded };
}

export class HttpOnramp {
  constructor(private readonly o: HttpOnrampOptions) {}

  async #openStream(host: string, kind: StreamKind, head: HttpRequestHead): Promise<TunnelStream> {
    const tunnelId = this.o.view.tunnelForHost(host) ?? this.o.defaultTunnel;
    if (!tunnelId) throw new OnrampError(404, `No tunnel serves the hostname ${host || '(none)'}. Route one with: oxyctl tunnel route dns TUNNEL ${host || 'HOSTNAME'}\n`);
    const live = this.o.registry.pick(tunnelId);
    if (!live) throw new OnrampError(502, `The tunnel ${tunnelId} for ${host} has no connector connected right now.\n`);
    const stream = await live.conn.openStream();
    writeRequestHeader(stream, { kind, destination: `http://${host}${head.path}`, metadata: encodeRequestHead(head) });
    return stream;
  }

  async #responseHead(stream: TunnelStream) {
    const header = await readStreamHeader(stream, { expect: 'response', timeoutMs: this.o.responseTimeoutMs ?? 120_000 });
    if (header.status !== ResponseStatus.OK) throw new OnrampError(502, `${header.message || 'The connector refused the request'}\n`);
    return decodeResponseHead(header.metadata);
  }

  readonly handleRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let stream: TunnelStream | undefined;
    res.on('close', () => {
      if (!res.writableFinished) stream?.destroy();
    });
    try {
      const head = requestHead(req);
      stream = await this.#openStream(head.host, 'http', head);
      const upload = pump(req, stream).catch(() => stream?.destroy());
      const response = await this.#responseHead(stream);
      res.writeHead(response.status, response.headers.flat());
      await pump(stream, res);
      await upload;
      this.o.requests?.inc({ status: String(response.status) });
    } catch (err) {
      this.#fail(res, err);
    }
  };

  readonly handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    let stream: TunnelStream | undefined;
    // After the 101 the bytes are a raw stream that half-closes (a client's FIN ends only its direction).
    (socket as Socket).allowHalfOpen = true;
    socket.on('error', () => stream?.destroy());
    try {
      const request = requestHead(req);
      stream = await this.#openStream(request.host, 'websocket', request);
      const response = await this.#responseHead(stream);
      const lines = [`HTTP/1.1 ${response.status} ${response.status === 101 ? 'Switching Protocols' : 'Upgrade Refused'}`];
      for (const [k, v] of response.headers) lines.push(`${k}: ${v}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      this.o.requests?.inc({ status: String(response.status) });
      if (response.status !== 101) {
        stream.pipe(socket);
        return;
      }
      if (head.length) stream.write(head);
      await bridge(socket, stream);
    } catch (err) {
      const status = err instanceof OnrampError ? err.status : 502;
      this.o.requests?.inc({ status: String(status) });
      if (!(err instanceof OnrampError)) this.o.log.warn({ err, host: req.headers.host }, 'Upgrade through the tunnel failed');
      socket.end(`HTTP/1.1 ${status} Bad Gateway\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${err instanceof Error ? err.message : ''}`);
      stream?.destroy();
    }
  };

  #fail(res: ServerResponse, err: unknown): void {
    const status = err instanceof OnrampError ? err.status : 502;
    this.o.requests?.inc({ status: String(status) });
    if (!(err instanceof OnrampError)) this.o.log.warn({ err }, 'Request through the tunnel failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = err instanceof OnrampError ? err.message : `Bad gateway: ${(err as Error).message}\n`;
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}
