/**
 * Both ends of an HTTP/2 tunnel connection:
 *  - dialHttp2Tunnel (connector): TLS with ALPN h2 to the edge, verify the edge against the
 *    CA (and optionally its SPKI pin), then become the HTTP/2 server on that socket.
 *  - acceptHttp2Tunnel (edge): on a TLS socket the edge accepted, become the HTTP/2 client.
 *  - dialHttp2Peer / serveHttp2Tunnel: a peer link between two edges (forwarding), the other
 *    way round: the dialing edge presents a client certificate of the shared CA and is the
 *    HTTP/2 client (it opens the streams, with no reverse-open round trip); the edge it dials
 *    serves them.
 */
import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import net, { isIP, type Socket } from 'node:net';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { debuglog } from 'node:util';
import { OxyError } from '../../../core/errors.js';
import { readAheadSocket } from '../../native/read-ahead.js';
import { spkiPin } from '../identity.js';
import { Http2TunnelConnection } from './connection.js';
import { ReadAheadDuplex } from './read-ahead.js';
import { CONNECTION_WINDOW, MAX_SESSION_MEMORY_MB, tunnelSettings, type Http2TuningOptions } from './settings.js';

export const H2_ALPN = 'h2';
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;
const debug = debuglog('oxy:transport:http2');

/**
 * OXY_H2_READAHEAD=js keeps the connector's session on the JS read-ahead (ReadAheadDuplex) even
 * where the addon's relay works; =thread keeps the addon's relays on their thread, =inline on the
 * JS thread's loop (the default moves them by load): the same build then measures each
 * (docs/decisions.md).
 */
const readAheadMode = (): string => process.env.OXY_H2_READAHEAD ?? 'auto';

export interface DialHttp2Options extends Http2TuningOptions {
  host: string;
  port: number;
  /** SNI and the name checked against the certificate. Default: `host`. */
  servername?: string;
  /** PEM CA certificate(s) to trust for the edge. Default: the system store. */
  ca?: string | string[];
  /** base64 SHA-256 of an SPKI that must appear in the edge's verified chain (edge CA pin). */
  caPin?: string;
  /** A client certificate chain and its key (peer links between edges; connectors have none). */
  cert?: string;
  key?: string;
  /** Check the edge's name against its certificate (default true; peer links check only the CA). */
  checkName?: boolean;
  /** Local address to dial from (--edge-bind-address). */
  localAddress?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Connector side: dial the edge and return the tunnel connection (before registration). The
 * TCP socket goes under the addon's read-ahead relay, TLS and the HTTP/2 session run natively
 * above it; without the addon (or with OXY_H2_READAHEAD=js), the session reads ahead in JS
 * (`ReadAheadDuplex`).
 */
export async function dialHttp2Tunnel(options: DialHttp2Options): Promise<Http2TunnelConnection> {
  const { socket, tcp } = await connectTls(options, true);
  if (!tcp) return serveHttp2Tunnel(socket, options);
  const session = http2.performServerHandshake(socket, serverOptions(options));
  setConnectionWindow(session, options.connectionWindow ?? CONNECTION_WINDOW);
  return new Http2TunnelConnection('connector', session, tcp);
}

/** The HTTP/2 server side of a tunnel connection on a TLS socket: the edge a peer link dials (or a connector without the addon). */
export function serveHttp2Tunnel(socket: TLSSocket, options: Http2TuningOptions = {}): Http2TunnelConnection {
  socket.setNoDelay(true);
  // The session runs over a Duplex that always drains the socket: with large windows, two
  // Node http2 peers sending at once can otherwise deadlock (read-ahead.ts).
  const session = http2.performServerHandshake(new ReadAheadDuplex(socket), serverOptions(options));
  setConnectionWindow(session, options.connectionWindow ?? CONNECTION_WINDOW);
  return new Http2TunnelConnection('connector', session, socket);
}

const serverOptions = (options: Http2TuningOptions): http2.ServerSessionOptions => ({
  settings: tunnelSettings(options.settings),
  maxSessionMemory: options.maxSessionMemoryMb ?? MAX_SESSION_MEMORY_MB,
});

/** A peer link: dial another edge with this edge's client certificate and be the side that opens streams. */
export async function dialHttp2Peer(options: DialHttp2Options & { cert: string; key: string }): Promise<Http2TunnelConnection> {
  return acceptHttp2Tunnel((await connectTls({ ...options, checkName: false }, false)).socket, options);
}

export interface AcceptHttp2Options extends Http2TuningOptions {
  /** Fail when the connector's SETTINGS do not arrive in time. Default 15 s. */
  timeoutMs?: number;
}

/**
 * Edge side: run the HTTP/2 client over an accepted TLS socket (ALPN must be h2). Resolves
 * once the connector's SETTINGS arrived, so stream limits are known.
 */
export async function acceptHttp2Tunnel(socket: TLSSocket, options: AcceptHttp2Options = {}): Promise<Http2TunnelConnection> {
  if (socket.alpnProtocol !== H2_ALPN) {
    socket.destroy();
    throw new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `Peer did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`);
  }
  socket.setNoDelay(true);
  const session = http2.connect('https://oxy-connector.invalid', {
    createConnection: () => socket,
    settings: tunnelSettings(options.settings),
    maxSessionMemory: options.maxSessionMemoryMb ?? MAX_SESSION_MEMORY_MB,
  });
  setConnectionWindow(session, options.connectionWindow ?? CONNECTION_WINDOW);
  const conn = new Http2TunnelConnection('edge', session, socket);
  const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      conn.close();
      reject(new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `No HTTP/2 SETTINGS from the connector within ${timeoutMs} ms`));
    }, timeoutMs);
    const onSettings = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', 'Connector closed during the HTTP/2 handshake'));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      session.off('remoteSettings', onSettings);
      session.off('close', onClose);
    };
    session.once('remoteSettings', onSettings);
    session.once('close', onClose);
  });
  return conn;
}

function setConnectionWindow(session: http2.Http2Session, size: number): void {
  if (size <= 65_535) return;
  const apply = (): void => {
    try {
      session.setLocalWindowSize(size);
    } catch {
      // session already gone; its close is reported through the connection
    }
  };
  if (session.connecting) session.once('connect', apply);
  else apply();
}

/**
 * TLS to the edge. With `readAhead`, TCP is dialed first and moved under the addon's read-ahead
 * relay (`tcp` is then the TCP socket, for addresses and close; TLS runs over the relay's pair).
 */
function connectTls(options: DialHttp2Options, readAhead: boolean): Promise<{ socket: TLSSocket; tcp?: Socket }> {
  const servername = options.servername ?? options.host;
  return new Promise((resolve, reject) => {
    let pinError: OxyError | undefined;
    const connectOptions: tls.ConnectionOptions = {
      host: options.host,
      port: options.port,
      // tls.connect hands localAddress to net.connect; its type omits it.
      ...({ localAddress: options.localAddress } as object),
      servername: isIP(servername) === 0 ? servername : undefined,
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      ALPNProtocols: [H2_ALPN],
      minVersion: 'TLSv1.2' as const,
      checkServerIdentity: (host, cert) => {
        const nameError = options.checkName === false ? undefined : tls.checkServerIdentity(servername || host, cert);
        if (nameError) return nameError;
        if (options.caPin && !chainHasPin(cert, options.caPin)) {
          pinError = new OxyError('OXY_ERR_TUNNEL_PIN_MISMATCH', 'The edge certificate chain does not contain the pinned CA key');
          return pinError;
        }
        return undefined;
      },
    };
    let socket: TLSSocket | undefined;
    let tcp: Socket | undefined;
    const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const timer = setTimeout(() => fail(new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `TLS handshake timed out after ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => fail(new OxyError('OXY_ERR_ABORTED', 'Dial aborted'));
    let settled = false;
    const cleanup = (): void => {
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket?.off('error', onError);
      tcp?.off('error', onError);
    };
    const fail = (err: Error): void => {
      cleanup();
      socket?.destroy();
      tcp?.destroy();
      reject(err);
    };
    const onError = (err: Error): void =>
      fail(
        pinError ??
          new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `TLS connection to ${options.host}:${options.port} failed: ${err.message}`, {
            cause: err,
          }),
      );
    const startTls = (under?: Socket): void => {
      const s = tls.connect(under ? { ...connectOptions, socket: under } : connectOptions);
      socket = s;
      s.once('error', onError);
      s.once('secureConnect', () => {
        if (s.alpnProtocol !== H2_ALPN) {
          fail(new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `Edge did not negotiate ALPN h2 (got ${String(s.alpnProtocol)})`));
          return;
        }
        cleanup();
        resolve({ socket: s, tcp });
      });
    };
    if (readAhead) {
      const t = net.connect({ host: options.host, port: options.port, localAddress: options.localAddress });
      tcp = t;
      t.on('error', (err) => debug('tunnel socket error: %s', err.message));
      t.once('error', onError);
      t.once('connect', () => {
        if (settled) return; // timed out or aborted meanwhile
        t.setNoDelay(true);
        // What the edge can send beyond what the session consumed is bounded by the connection
        // window we advertise (plus TLS and frame overhead): the relay queues up to twice that.
        const mode = readAheadMode();
        const placement = mode === 'thread' || mode === 'inline' ? mode : 'auto';
        const relay = mode !== 'js' ? readAheadSocket(t, 2 * (options.connectionWindow ?? CONNECTION_WINDOW), placement) : undefined;
        if (!relay) {
          tcp = undefined; // the session reads ahead in JS on the TLS socket itself
          t.off('error', onError);
          startTls(t);
          return;
        }
        relay.socket.on('error', (err) => debug('read-ahead pair error: %s', err.message));
        startTls(relay.socket);
        // A reset or a failed send on the TCP socket: the session hears it as its socket's error.
        void relay.ended.then(({ error }) => {
          if (error && !socket?.destroyed) socket?.destroy(error);
        });
      });
    } else startTls();
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Whether any certificate of the (verified) chain has the pinned SPKI. */
function chainHasPin(leaf: PeerCertificate, pin: string): boolean {
  const seen = new Set<PeerCertificate>();
  for (let cert: PeerCertificate | undefined = leaf; cert && !seen.has(cert); ) {
    seen.add(cert);
    if (cert.raw) {
      const spki = new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' });
      if (spkiPin(spki) === pin) return true;
    }
    cert = (cert as tls.DetailedPeerCertificate).issuerCertificate;
  }
  return false;
}
