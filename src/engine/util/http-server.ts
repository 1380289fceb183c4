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
import { Socket } from 'node:net';
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
  const linger = nodeHttpInternals().usable;
  // Sockets also arrive by emit('connection') from an admitting listener: this covers both.
  server.on('connection', (socket: Socket) => {
    socket.on('error', ignore);
    // Node closes a connection after its last answer (Connection: close) with destroySoon: the
    // FIN, then the socket destroyed once flushed, and a client still sending the request's body
    // reads a reset instead of the answer. It closes as after any answer instead. Without the
    // internals (nodeHttpInternals) Node's own destroySoon stays: closed once the answer is flushed.
    if (linger) socket.destroySoon = () => lingerAfterAnswer(socket);
  });
  server.on('clientError', clientError);
  // Before the handler: a request or response that errors (client gone) is handled by the
  // handler's own pipes or not at all, never by the process.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.on('error', ignore);
    res.on('error', ignore);
    answering(req.socket, res);
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

/**
 * What the lingering close of Node's server's connections (destroySoon, clientError) takes from
 * Node beyond its documented API, checked once per process (`nodeHttpInternals`); a unit test
 * checks each on the Node it runs (test/unit/util/http-server-internals.test.ts):
 * - `data-unconsumes`: Node's server wraps a connection socket's `on` so that a 'data' listener
 *   takes the socket from its parser (Node 20 _http_server.js generateSocketListenerWrapper →
 *   unconsume, the parser reading the socket natively otherwise): how lingerAfterAnswer stops the
 *   parser, and how a TLS socket is read in JS. Checked on a socket that a server not listening
 *   is given by emit('connection'): its `on` is no longer net.Socket's.
 * - `destroySoon`: Node's server ends a connection after its last answer (Connection: close)
 *   with `socket.destroySoon()` when the socket has one (resOnFinish), which each socket
 *   overrides. Checked: net.Socket has the method.
 * Without one (or with `OXY_HTTP_INTERNALS=0`) nothing is overridden or detached: a refusal, and
 * a connection's last answer, close once the answer is flushed (Node's destroySoon; LINGER_MS 0),
 * and a client still sending may read a reset instead of the answer (as before session 23).
 */
export interface NodeHttpInternals {
  /** All present and not switched off: refusals and last answers linger (util/linger.ts). */
  usable: boolean;
  /** `OXY_HTTP_INTERNALS=0`. */
  switchedOff: boolean;
  /** The internals this Node lacks (named as above). */
  missing: string[];
}

let internals: NodeHttpInternals | undefined;

/** The check above, made once per process (the edge logs its result at start). */
export function nodeHttpInternals(): NodeHttpInternals {
  if (internals) return internals;
  const missing: string[] = [];
  if (!dataUnconsumes()) missing.push('data-unconsumes');
  if (typeof (Socket.prototype as { destroySoon?: unknown }).destroySoon !== 'function') missing.push('destroySoon');
  const switchedOff = process.env.OXY_HTTP_INTERNALS === '0';
  internals = { usable: !switchedOff && missing.length === 0, switchedOff, missing };
  return internals;
}

/** A socket with no handle, given to a server that does not listen: what Node's connection listener does to it. */
function dataUnconsumes(): boolean {
  const socket = new Socket();
  try {
    createServer().emit('connection', socket);
    return socket.on !== Socket.prototype.on;
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

/**
 * The responses of a connection not yet finished, in the order of their requests: the first is
 * the one writing to the socket (what Node keeps as `socket._httpMessage`, kept here from public
 * events: Node detaches a response at its 'finish').
 */
const responses = new WeakMap<Socket, ServerResponse[]>();

function answering(socket: Socket, res: ServerResponse): void {
  let list = responses.get(socket);
  if (!list) responses.set(socket, (list = []));
  list.push(res);
  const done = (): void => {
    const i = list.indexOf(res);
    if (i >= 0) list.splice(i, 1);
  };
  res.once('finish', done);
  res.once('close', done);
}

/** The answer writing to `socket` has its head out (or about to be): bytes of ours would corrupt it. */
const answerBegun = (socket: Socket): boolean => responses.get(socket)?.[0]?.headersSent === true;

/**
 * Node's answer to what its parser refuses (400, 408, 413, 431), then the connection closes as
 * after any answer (util/linger.ts): what the client still sends is dropped, not a reset that
 * loses the answer. Node's own handler writes it and destroys the socket at once. A request in
 * flight (its body went wrong, or came too slowly) is aborted when the socket goes (its client's
 * FIN, or the bound: Node's abortIncoming); an answer already begun is cut: the socket goes now.
 * Without the internals the answer is written and the socket closes once it is flushed.
 */
function clientError(err: NodeJS.ErrnoException, duplex: Duplex): void {
  const socket = duplex as Socket;
  if (closingAfterAnswer(socket) || lingering.has(socket)) return;
  if (!socket.writable || answerBegun(socket)) return void socket.destroy();
  socket.write(`HTTP/1.1 ${CLIENT_ERRORS[err.code ?? ''] ?? '400 Bad Request'}\r\nConnection: close\r\n\r\n`);
  if (nodeHttpInternals().usable) lingerAfterAnswer(socket);
  else closeAfterAnswer(socket, 0);
}

/** Sockets lingerAfterAnswer took (a second call, or a refusal while it waits for the socket's 'resume', is a no-op). */
const lingering = new WeakSet<Socket>();

/**
 * Node's parser reads `socket` no more, and the socket closes after what was written to it
 * (closeAfterAnswer: what the client still sends is read in JS and dropped, never parsed). The
 * parser's 'data' listener (when JS reads the socket) goes; a 'data' listener added makes Node's
 * server take the socket from a parser that reads it natively (`data-unconsumes`).
 *
 * A socket Node paused (a request body nobody reads, answers backed up) is resumed first: Node
 * stops and restarts a natively read socket's reads at its 'pause' / 'resume', listeners it drops
 * with the parser, and a socket detached while paused was never read again — the client's bytes
 * and FIN unread until the 5 s bound, then a reset (an upload answered 404 / Connection: close on
 * the per-request path, session 23's code). Node's listener restarts the reads, then this detaches,
 * in one turn: nothing is parsed between.
 */
function lingerAfterAnswer(socket: Socket): void {
  if (lingering.has(socket)) return;
  lingering.add(socket);
  const detach = (): void => {
    socket.removeAllListeners('data');
    socket.on('data', ignore);
    closeAfterAnswer(socket);
  };
  if (!socket.isPaused()) return detach();
  socket.once('resume', detach);
  socket.resume();
}

function failed(res: ServerResponse): void {
  if (res.headersSent) res.destroy();
  else res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 22 }).end('Internal server error\n');
}
