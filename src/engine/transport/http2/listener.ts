/**
 * The edge's HTTP/2 tunnel listener: a TLS server (ALPN h2 only) whose accepted sockets
 * become Http2TunnelConnections (the edge being the HTTP/2 client). Emits 'connection'
 * with each connection once the connector's SETTINGS arrived; registration is the caller's
 * next step (acceptRegistration in ../../protocol/registration.ts).
 *
 * With `peerCa`, the listener also takes peer links from other edges (forwarding): it asks
 * every client for a certificate; a connector sends none and goes on as above, a client whose
 * certificate chains to the edge CA and is a peer certificate (identity.ts) becomes a 'peer'
 * (this edge is then the HTTP/2 server and serves the streams it opens), and any other
 * certificate is refused.
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { debuglog } from 'node:util';
import { TunnelCloseCode } from '../../protocol/codes.js';
import type { TunnelConnection } from '../types.js';
import { OxyError } from '../../../core/errors.js';
import { peerEdgeId } from '../identity.js';
import { acceptHttp2Tunnel, H2_ALPN, serveHttp2Tunnel, type AcceptHttp2Options } from './dial.js';
import { listenOn, type ListenOptions } from '../../native/reuseport.js';

const debug = debuglog('oxy:transport:http2');

export interface Http2TunnelListenerOptions extends AcceptHttp2Options {
  /** PEM private key of the edge's server certificate. */
  key: string;
  /** PEM server certificate, followed by its chain (EdgeIdentity.certChain). */
  cert: string;
  /** TLS handshake timeout. Default 15 s. */
  handshakeTimeoutMs?: number;
  /** PEM of the edge CA: accept peer links from edges holding a peer certificate it signed. */
  peerCa?: string;
}

export interface Http2TunnelListenerEvents {
  connection: [TunnelConnection];
  /** A peer link from another edge (its id from its certificate). */
  peer: [TunnelConnection, string];
  /** A connection that failed before it became a tunnel connection (TLS, ALPN, SETTINGS). */
  connectionError: [Error];
  error: [Error];
}

export class Http2TunnelListener extends EventEmitter<Http2TunnelListenerEvents> {
  private readonly server: tls.Server;
  private readonly connections = new Set<TunnelConnection>();

  constructor(private readonly options: Http2TunnelListenerOptions) {
    super();
    this.server = tls.createServer({
      key: options.key,
      cert: options.cert,
      ALPNProtocols: [H2_ALPN],
      minVersion: 'TLSv1.2',
      handshakeTimeout: options.handshakeTimeoutMs ?? 15_000,
      // A connector answers the request with no certificate; only a peer edge sends one.
      ...(options.peerCa ? { requestCert: true, rejectUnauthorized: false, ca: options.peerCa } : {}),
    });
    this.server.on('secureConnection', (socket: TLSSocket) => void this.onSocket(socket));
    // Node leaves a socket whose handshake failed or timed out open when this event has a
    // listener: close it, or a client that stalls mid-handshake holds it forever.
    this.server.on('tlsClientError', (err, socket) => {
      socket.destroy();
      this.emit('connectionError', err);
    });
    this.server.on('error', (err) => this.emit('error', err));
  }

  async listen(port = 0, host = '127.0.0.1', o: ListenOptions = {}): Promise<AddressInfo> {
    await listenOn(this.server, host, port, o);
    return this.address();
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Serves a TCP connection accepted elsewhere (TLS handshake on): `edge run --workers` places them. */
  adopt(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  /** Stop accepting and close every connection with `code`/`reason`. */
  async close(code: number = TunnelCloseCode.SHUTDOWN, reason = 'edge shutting down'): Promise<void> {
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const all = [...this.connections];
    for (const conn of all) conn.close(code, reason);
    await Promise.all(all.map((c) => c.closed));
    await closing;
  }

  private async onSocket(socket: TLSSocket): Promise<void> {
    socket.on('error', (err) => debug('edge socket error: %s', err.message));
    if (this.options.peerCa) {
      const presented = socket.getPeerCertificate()?.raw;
      if (presented?.length) {
        const edgeId = socket.authorized ? peerEdgeId(presented) : undefined;
        if (!edgeId) {
          socket.destroy();
          const why = socket.authorized ? 'not a peer certificate' : String(socket.authorizationError);
          this.emit('connectionError', new OxyError('OXY_ERR_PEER_REFUSED', `Refused a client certificate on the tunnel listener (${why})`));
          return;
        }
        const conn = serveHttp2Tunnel(socket, this.options);
        this.connections.add(conn);
        void conn.closed.then(() => this.connections.delete(conn));
        this.emit('peer', conn, edgeId);
        return;
      }
    }
    try {
      const conn = await acceptHttp2Tunnel(socket, this.options);
      this.connections.add(conn);
      void conn.closed.then(() => this.connections.delete(conn));
      this.emit('connection', conn);
    } catch (err) {
      socket.destroy();
      this.emit('connectionError', err as Error);
    }
  }
}
