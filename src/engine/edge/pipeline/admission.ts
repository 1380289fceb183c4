/**
 * What every TCP connection of the edge's HTTP listeners (the forward proxy, and the
 * public-hostname listener when hooks or PROXY protocol need it) goes through before a
 * byte of it is parsed as HTTP: its hook context (`newCtx`), the PROXY header when the
 * listener expects one (`ctx.client` becomes the header's source;
 * `proxyProtocol.handleConnection`), and admission (`ingress.handleConnection`). At its end
 * `ingress.handleConnectionClose` gets its statistics: bytes, duration and — read from the
 * kernel just before the socket closes, only when that hook is implemented — TCP
 * retransmits and RTT.
 */
import type { Server as HttpServer } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { OxyError } from '../../../core/errors.js';
import { readProxyHeader } from '../../protocol/proxy-protocol.js';
import type { HookConnection, HookError, HookRunner } from '../../hooks/runner.js';
import type { HookContext, Onramp } from '../../hooks/types.js';
import { tcpInfoAtClose } from '../../native/tcp-info.js';
import { socketBytes } from '../../native/splice.js';
import type { Logger } from '../../observe/log.js';
import { splitHostPort } from '../../../core/address.js';
import { listenOn, type ListenOptions } from '../../native/reuseport.js';

export interface AdmissionOptions {
  runner: HookRunner;
  onramp: Onramp;
  log: Logger;
  /** Every connection starts with a PROXY protocol v1/v2 header (a load balancer in front); one without is closed. */
  proxyProtocol?: boolean;
}

/**
 * Admits a new connection: resolves with its hook context, or undefined when it was refused
 * (blocked by a hook, no valid PROXY header, a hook failed), in which case the socket is
 * destroyed and the refusal logged.
 */
export async function admitConnection(socket: Socket, o: AdmissionOptions): Promise<HookConnection | undefined> {
  const r = o.runner;
  let conn: HookConnection;
  try {
    conn = r.connection(
      o.onramp,
      { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
    );
  } catch (err) {
    o.log.error({ hook: (err as HookError).hook, err: (err as HookError).cause ?? err }, 'Hook failed; closing its connection');
    socket.destroy();
    return undefined;
  }
  const tcp = r.ingressClose ? tcpInfoAtClose(socket) : undefined;
  let refused: string | undefined;
  socket.once('close', (hadError) => {
    const info = tcp?.();
    const bytes = socketBytes(socket);
    r.close(conn, {
      bytesIn: bytes.read,
      bytesOut: bytes.written,
      durationMs: Date.now() - conn.startedAt,
      reason: refused ?? (hadError ? 'error' : 'closed'),
      retransmits: info?.totalRetrans,
      rttMs: info && info.rttUs / 1000,
    });
  });
  const refuse = (reason: string): undefined => {
    refused = reason;
    socket.destroy();
    return undefined;
  };
  const ctx = conn as HookContext<unknown>;
  try {
    if (o.proxyProtocol) {
      const header = await readProxyHeader(socket);
      conn.proxyHeader = header;
      if (header.command === 'PROXY' && header.source) conn.client = header.source;
      if (r.proxyHeader && (await r.call(conn, 'proxyProtocol.handleConnection', r.proxyHeader, header, ctx))?.action === 'block') return refuse('blocked');
    }
    if (r.ingressConnection && (await r.call(conn, 'ingress.handleConnection', r.ingressConnection, ctx))?.action === 'block') return refuse('blocked');
  } catch (err) {
    if (err instanceof OxyError && err.code === 'OXY_ERR_PROXY_PROTOCOL') {
      conn.log.warn(
        { onramp: o.onramp, client: `${socket.remoteAddress}:${socket.remotePort}`, err },
        'Closed a connection without a valid PROXY protocol header',
      );
    } else r.failed(conn, err, 'Refused connection');
    return refuse('error');
  }
  return socket.destroyed ? undefined : conn;
}

/**
 * A TCP listener that admits each connection (above) and then hands it to an HTTP server
 * that does not listen itself; the server's handlers find the connection's hook context
 * with `connection(req.socket)`.
 */
export class AdmittingListener {
  readonly #tcp: net.Server;
  readonly #sockets = new Set<Socket>();
  readonly #conns = new WeakMap<object, HookConnection>();

  constructor(
    private readonly http: HttpServer,
    private readonly o: AdmissionOptions,
  ) {
    // As http.Server does: half-open (CONNECT tunnels and upgrades close each way on its own), no Nagle.
    this.#tcp = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => void this.#accept(socket));
  }

  async listen(hostPort: string, o: ListenOptions = {}): Promise<void> {
    const { host, port } = splitHostPort(hostPort);
    await listenOn(this.#tcp, host, port, o);
    this.#tcp.on('error', (err) => this.o.log.error({ err, onramp: this.o.onramp }, 'Listener error'));
    // The HTTP server never listens itself, and Node starts enforcing headersTimeout and
    // requestTimeout on 'listening': without this a slowloris client lived forever here.
    this.http.emit('listening');
  }

  get address(): AddressInfo {
    return this.#tcp.address() as AddressInfo;
  }

  /** The hook context of an admitted connection (a request's or an upgrade's socket). */
  connection(socket: object): HookConnection {
    return this.#conns.get(socket)!;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    // Stops the HTTP server's timeout checks (it was never listening: its callback says so, ignored).
    this.http.close(() => undefined);
    await new Promise((resolve) => this.#tcp.close(resolve));
  }

  async #accept(socket: Socket): Promise<void> {
    socket.on('error', () => undefined);
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const conn = await admitConnection(socket, this.o);
    if (!conn) return;
    this.#conns.set(socket, conn);
    this.http.emit('connection', socket);
    if (socket.isPaused()) socket.resume();
  }
}
