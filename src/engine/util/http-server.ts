/**
 * The one way the edge and the connector make an HTTP/1.1 server (public listener, CONNECT
 * proxy, metrics): every socket, request and response has an 'error' handler (an aborted
 * request emits 'error' on its IncomingMessage; without a listener that kills the process),
 * and every phase of a connection is timed out, so a client that stops sending (slowloris)
 * is closed instead of held forever. With `tls` (the dashboard's HTTPS) the TLS handshake
 * counts as part of the head: one that fails or stalls closes its socket.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { closeAfterAnswer, closingAfterAnswer } from './linger.js';

export interface HttpTimeouts {
  /** From the first byte of a request to the end of its head (slowloris on headers). */
  headersMs: number;
  /** From the first byte of a request to the end of its body (a body dripped byte by byte). */
  requestMs: number;
  /** A socket with no bytes either way for this long is closed (not after an upgrade/CONNECT: those are the application's). */
  idleMs: number;
  /** An idle keep-alive connection between requests. */
  keepAliveMs: number;
}

/**
 * Defaults for public listeners: nginx-like header and idle limits; the request limit is
 * generous because it bounds an upload's whole transfer.
 */
export const HTTP_TIMEOUTS: HttpTimeouts = { headersMs: 30_000, requestMs: 600_000, idleMs: 120_000, keepAliveMs: 75_000 };

const ignore = (): void => undefined;

/** HTTP_TIMEOUTS with the values `timeouts` sets (undefined ones keep the default). */
export function httpTimeouts(timeouts: Partial<HttpTimeouts> = {}): HttpTimeouts {
  const t = { ...HTTP_TIMEOUTS };
  for (const [k, v] of Object.entries(timeouts) as [keyof HttpTimeouts, number | undefined][]) if (v !== undefined) t[k] = v;
  return t;
}

export function createHttpServer(handler: RequestListener, timeouts: Partial<HttpTimeouts> = {}, tls?: { key: string; cert: string }): Server {
  const t = httpTimeouts(timeouts);
  const options = {
    headersTimeout: t.headersMs,
    requestTimeout: t.requestMs,
    keepAliveTimeout: t.keepAliveMs,
    // How often Node checks the header/request deadlines; a fraction of the shortest one.
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(Math.min(t.headersMs, t.requestMs) / 4))),
  };
  // https.Server is an http.Server over TLS sockets (Node's types keep them apart).
  const server = tls ? (createHttpsServer({ ...options, ...tls, handshakeTimeout: t.headersMs }) as unknown as Server) : createServer(options);
  server.timeout = t.idleMs;
  if (tls) {
    // Node leaves a socket whose handshake failed or timed out open when 'tlsClientError' has
    // a listener (and without one, it is the default listener that closes it): close it here.
    server.on('tlsClientError', (_err: Error, socket: Socket) => socket.destroy());
    server.on('secureConnection', (socket: Socket) => {
      socket.on('error', ignore);
      // Node 20 hands a TLS socket's reads to the HTTP parser natively (parser.consume), and a TLS
      // read that decrypts to several records keeps feeding the parser after pipelined requests
      // paused it (their answers back up): HPE_PAUSED, and the connection closes after the first
      // answers. A 'data' listener (after http's own, which came first) makes Node read in JS
      // ("unconsume"), where a paused socket holds its bytes.
      socket.on('data', ignore);
    });
  }
  // After listen (callers reject on a listen error themselves): an accept that fails (EMFILE) is not fatal.
  server.on('error', ignore);
  // Sockets also arrive by emit('connection') from an admitting listener: this covers both.
  server.on('connection', (socket: Socket) => {
    socket.on('error', ignore);
    // Node closes a connection after its last answer (Connection: close) with destroySoon: the
    // FIN, then the socket destroyed once flushed, and a client still sending the request's body
    // reads a reset instead of the answer. It closes as after any answer instead.
    socket.destroySoon = () => {
      detachParser(socket);
      closeAfterAnswer(socket);
    };
  });
  server.on('clientError', clientError);
  // Before the handler: a request or response that errors (client gone) is handled by the
  // handler's own pipes or not at all, never by the process.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.on('error', ignore);
    res.on('error', ignore);
  });
  // A handler that throws or rejects fails its request (500, or the connection if the head went), never the process.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    try {
      const done = handler(req, res) as unknown;
      if (done instanceof Promise) done.catch(() => failed(res));
    } catch {
      failed(res);
    }
  });
  return server;
}

/** What Node's server answers a request its parser refuses (its socketOnError), by the error's code. */
const CLIENT_ERRORS: Record<string, string> = {
  HPE_HEADER_OVERFLOW: '431 Request Header Fields Too Large',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: '413 Payload Too Large',
  ERR_HTTP_REQUEST_TIMEOUT: '408 Request Timeout',
};

interface ServerSocket extends Socket {
  /** Node's parser of the connection, while it has one. */
  parser?: { _consumed?: boolean; unconsume?: () => void } | null;
  /** The response in flight on it, if any. */
  _httpMessage?: { headersSent?: boolean } | null;
}

/**
 * Node's answer to what its parser refuses (400, 408, 413, 431), then the connection closes as
 * after any answer (util/linger.ts): what the client still sends is dropped, not a reset that
 * loses the answer. Node's own handler writes it and destroys the socket at once. A request in
 * flight (its body went wrong, or came too slowly) is aborted when the socket goes (its client's
 * FIN, or the bound: Node's abortIncoming); an answer already begun is cut: the socket goes now.
 */
function clientError(err: NodeJS.ErrnoException, duplex: Duplex): void {
  const socket = duplex as ServerSocket;
  if (closingAfterAnswer(socket)) return;
  const inFlight = socket._httpMessage;
  if (!socket.writable || inFlight?.headersSent) return void socket.destroy();
  socket.write(`HTTP/1.1 ${CLIENT_ERRORS[err.code ?? ''] ?? '400 Bad Request'}\r\nConnection: close\r\n\r\n`);
  detachParser(socket);
  closeAfterAnswer(socket);
}

/** Node's parser reads `socket` no more: what comes from here is read in JS (and dropped by closeAfterAnswer), never parsed. */
function detachParser(duplex: Socket): void {
  const socket = duplex as ServerSocket;
  const parser = socket.parser;
  if (parser?._consumed) {
    parser.unconsume?.();
    parser._consumed = false;
  }
  socket.removeAllListeners('data');
}

function failed(res: ServerResponse): void {
  if (res.headersSent) res.destroy();
  else res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 22 }).end('Internal server error\n');
}
