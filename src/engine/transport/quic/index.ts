/**
 * The QUIC tunnel transport: `dialQuic` (connector → edge) and `listenQuic` (edge), on the
 * addon's ngtcp2 (./ngtcp2-connection.ts, ./ngtcp2-listener.ts) or, with OXY_QUIC_IMPL /
 * OXY_QUIC_SERVER_IMPL=quiche, our own driver on quiche (./endpoint.ts, ./connection.ts); both
 * on the native pktinfo UDP socket, so a listener on the wildcard answers each client from the
 * address it dialed.
 *
 *   const listener = await listenQuic({ cert: id.certChain, key: id.key, port: 7844 }, (conn) => …);
 *   const conn = await dialQuic({ host: '198.18.0.1', port: 7844, ca: id.caCert, caPin: id.caPin });
 *
 * To bind inside another network namespace, create the socket there yourself
 * (`withNetns(path, () => PktinfoUdpSocket.bind(…))`) and pass it as `socket`.
 */
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { OxyError } from '../../../core/errors.js';
import { PktinfoUdpSocket } from '../../native/index.js';
import { TunnelCloseCode } from '../../protocol/codes.js';
import { createQuicClient } from '../../native/index.js';
import {
  buildQuicheConfig,
  CID_LENGTH,
  DEFAULT_IDLE_TIMEOUT_MS,
  isLoopbackAddress,
  LOOPBACK_UDP_PAYLOAD,
  EDGE_NEAR_CWND_UNIT,
  NEAR_CWND_UNIT,
  PMTUD_UDP_PAYLOAD,
  QUIC_ALPN,
  quiche,
  quicSettings,
  type QuicTimingOptions,
  type QuicTuningOptions,
} from './config.js';
import { QuicDialError, QuicTunnelConnection } from './connection.js';
import { Ngtcp2TunnelConnection } from './ngtcp2-connection.js';
import { Ngtcp2Listener } from './ngtcp2-listener.js';
import { QuicEndpoint } from './endpoint.js';
import { RetryTokens } from './retry.js';
import { StatelessResets } from './stateless-reset.js';

export { LOOPBACK_UDP_PAYLOAD, QUIC_ALPN, type QuicTimingOptions, type QuicTuningOptions } from './config.js';
export { QuicDialError, QuicTunnelConnection, STREAM_RESET_CODE, type QuicDialFailure } from './connection.js';
export { Ngtcp2TunnelConnection } from './ngtcp2-connection.js';

/** UDP socket buffers: large, so a burst at 100+ MB/s is not dropped by the kernel. */
const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;

export interface QuicSocketOptions {
  /** A socket to use instead of binding one (e.g. created inside another network namespace). Not closed by us. */
  socket?: PktinfoUdpSocket;
  /** SO_RCVBUF/SO_SNDBUF of a socket we bind. Default 8 MiB. */
  socketBufferBytes?: number;
  /** Send runs of packets with UDP GSO (one system call, one trip down the stack). Default true; off by itself where refused. */
  gso?: boolean;
  /** ngtcp2: receive runs of packets the kernel coalesced (UDP GRO), one message each. Default true. */
  gro?: boolean;
  /**
   * ngtcp2: path MTU discovery off loopback (DF on the socket; packets from 1,200 bytes up to what
   * probes find, up to PMTUD_UDP_PAYLOAD for a connector left at its default size). Default true
   * unless OXY_QUIC_PMTUD=0.
   */
  pmtud?: boolean;
}

export interface QuicDialOptions extends QuicTimingOptions, QuicSocketOptions {
  /** Edge address: an IP or a name (resolved with dns.lookup). */
  host: string;
  port: number;
  /** CA certificate(s), PEM, that the edge certificate must chain to. */
  ca: string | string[];
  /** base64 SHA-256 of the CA's SPKI (EdgeIdentity.caPin): that CA must have signed the edge certificate. */
  caPin?: string;
  /** TLS server name (SNI, checked against the certificate's DNS names). Default: `host` when it is a name. */
  servername?: string;
  /** Local address to bind. Default the wildcard of the edge address's family. */
  localAddress?: string;
  /** Give up when the handshake takes longer. Default 10 s. (`timeoutMs`, as for HTTP/2, is the same.) */
  handshakeTimeoutMs?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  tuning?: QuicTuningOptions;
}

/** The connector's QUIC connection: ngtcp2 in the addon (the default), or quiche through our driver (`OXY_QUIC_IMPL=quiche`). */
export type QuicClientConnection = QuicTunnelConnection | Ngtcp2TunnelConnection;

/** Which QUIC library the connector dials with: the addon's ngtcp2 client, or quiche with `OXY_QUIC_IMPL=quiche`. */
export function quicClientImpl(): 'quiche' | 'ngtcp2' {
  return process.env.OXY_QUIC_IMPL === 'quiche' ? 'quiche' : 'ngtcp2';
}

/** Which QUIC library the edge listens with: the addon's ngtcp2 server, or quiche with `OXY_QUIC_SERVER_IMPL=quiche`. */
export function quicServerImpl(): 'quiche' | 'ngtcp2' {
  return process.env.OXY_QUIC_SERVER_IMPL === 'quiche' ? 'quiche' : 'ngtcp2';
}

/** The edge's side of a QUIC tunnel connection: quiche through our driver, or one of the addon's ngtcp2 server. */
export type QuicServerConnection = QuicTunnelConnection | Ngtcp2TunnelConnection;

/** Dials the edge; resolves once the handshake completed and the edge certificate verified. */
export async function dialQuic(options: QuicDialOptions): Promise<QuicClientConnection> {
  if (options.signal?.aborted) throw new QuicDialError('OXY_ERR_ABORTED', 'aborted', 'The operation was aborted');
  const address = isIP(options.host) !== 0 ? options.host : (await lookup(options.host)).address;
  const family = isIP(address) === 4 ? 4 : 6;
  const tuning = isLoopbackAddress(address) ? { maxUdpPayloadSize: LOOPBACK_UDP_PAYLOAD, ...options.tuning } : (options.tuning ?? {});
  if (quicClientImpl() === 'ngtcp2' && options.socket === undefined) return dialNgtcp2(options, address, family, tuning);
  const socket =
    options.socket ??
    PktinfoUdpSocket.bind({
      address: options.localAddress ?? (family === 4 ? '0.0.0.0' : '::'),
      ipv6Only: family === 6,
      recvBufferSize: options.socketBufferBytes ?? SOCKET_BUFFER_BYTES,
      sendBufferSize: options.socketBufferBytes ?? SOCKET_BUFFER_BYTES,
      maxDatagramSize: Math.max(2048, Math.max(tuning.maxUdpPayloadSize ?? 0, tuning.maxRecvUdpPayloadSize ?? 0) + 64),
    });
  const endpoint = new QuicEndpoint(socket, options.socket === undefined, options.gso ?? true);
  let conn: QuicTunnelConnection;
  try {
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    const config = buildQuicheConfig('client', { ca: options.ca }, tuning, { idleTimeoutMs });
    const serverName = options.servername ?? (isIP(options.host) === 0 ? options.host : null);
    const local = { host: endpoint.localAddress, port: endpoint.localPort };
    const remote = { host: address, port: options.port };
    const quic = quiche.Connection.connect(serverName, randomBytes(CID_LENGTH), local, remote, config);
    conn = new QuicTunnelConnection(endpoint, quic, {
      role: 'connector',
      local,
      remote,
      keepAliveMs: options.keepAliveMs ?? Math.floor(idleTimeoutMs / 3),
      verify: {
        ip: serverName === null ? address : undefined,
        caPin: options.caPin,
        ca: ([] as string[]).concat(options.ca),
      },
    });
    endpoint.attachClient(conn, address, options.port);
  } catch (err) {
    endpoint.shutdown(TunnelCloseCode.INTERNAL_ERROR, 'dial failed');
    throw new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'closed', `QUIC dial failed: ${(err as Error).message}`, err);
  }
  endpoint.markDirty(conn);

  return awaitHandshake(conn, options, address, endpoint, () => {
    conn.close(TunnelCloseCode.NO_ERROR, 'dial abandoned');
    void endpoint.shutdown(TunnelCloseCode.NO_ERROR, 'dial abandoned');
  });
}

/** dialQuic on the addon's ngtcp2 client: same options, defaults, checks and errors. */
async function dialNgtcp2(options: QuicDialOptions, address: string, family: 4 | 6, tuning: QuicTuningOptions): Promise<Ngtcp2TunnelConnection> {
  const serverName = options.servername ?? (isIP(options.host) === 0 ? options.host : null);
  const ca = ([] as string[]).concat(options.ca);
  let conn: Ngtcp2TunnelConnection;
  try {
    const pmtud = pmtudWanted(options);
    // With PMTUD a connector at the default size offers and probes up to PMTUD_UDP_PAYLOAD.
    const sized = pmtud && tuning.maxUdpPayloadSize === undefined ? { ...tuning, maxUdpPayloadSize: PMTUD_UDP_PAYLOAD } : tuning;
    const settings = quicSettings(sized, options, 'ngtcp2');
    const native = {
      ...settings,
      pmtud,
      ...(nearCwndWanted() ? { nearCwndUnit: NEAR_CWND_UNIT } : {}),
      remoteAddress: address,
      remotePort: options.port,
      localAddress: options.localAddress ?? (family === 4 ? '0.0.0.0' : '::'),
      family,
      alpn: QUIC_ALPN,
      ca: ca.join('\n'),
      serverName,
      socketBufferBytes: options.socketBufferBytes ?? SOCKET_BUFFER_BYTES,
      gso: gsoWanted(options),
      gro: groWanted(options),
    };
    conn = new Ngtcp2TunnelConnection((onEvents) => createQuicClient(native, onEvents), {
      role: 'connector',
      remote: { address, port: options.port },
      verify: { ip: serverName === null ? address : undefined, caPin: options.caPin, ca },
    });
  } catch (err) {
    throw new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'closed', `QUIC dial failed: ${(err as Error).message}`, err);
  }
  return awaitHandshake(conn, options, address, conn, () => conn.abandon('dial abandoned'));
}

/**
 * A dialed connection once its handshake completes; within the handshake timeout (the error says
 * why UDP sends failed, when they did) and until `options.signal` aborts, else `abandon()`s it.
 */
async function awaitHandshake<C extends { handshake: Promise<unknown> }>(
  conn: C,
  options: QuicDialOptions,
  address: string,
  sends: { sendErrors: number; lastSendError?: Error },
  abandon: () => void,
): Promise<C> {
  const timeoutMs = options.handshakeTimeoutMs ?? options.timeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const hint = sends.sendErrors > 0 ? ` (UDP send failed: ${sends.lastSendError?.message})` : '';
      reject(
        new QuicDialError(
          'OXY_ERR_TUNNEL_HANDSHAKE',
          sends.sendErrors > 0 ? 'unreachable' : 'timeout',
          `QUIC handshake with ${address}:${options.port} did not complete within ${timeoutMs} ms${hint}`,
        ),
      );
    }, timeoutMs);
    onAbort = () => reject(new QuicDialError('OXY_ERR_ABORTED', 'aborted', 'The operation was aborted'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([conn.handshake, guard]);
    return conn;
  } catch (err) {
    abandon();
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
  }
}

export interface QuicListenOptions extends QuicTimingOptions, QuicSocketOptions {
  /** Certificate chain (PEM, leaf first: EdgeIdentity.certChain) and its key. */
  cert: string;
  key: string;
  /** Bind address. Default '::' (dual-stack). */
  host?: string;
  /** Default 0 (the kernel picks; read it from `address`). */
  port?: number;
  ipv6Only?: boolean;
  /** Share the port with other processes (SO_REUSEPORT: `edge run --workers`); the kernel keeps a 4-tuple on one socket. */
  reusePort?: boolean;
  /** A bound UDP socket to adopt (a worker's member of the primary's SO_REUSEPORT group); closed with the listener. */
  fd?: number;
  /** Stateless retry (address validation) before allocating state. Default true. */
  retry?: boolean;
  /** Connections at once; further handshakes are ignored. Default 10,000. */
  maxConnections?: number;
  /** The QUIC library: the addon's ngtcp2 server, or quiche. Default: `OXY_QUIC_SERVER_IMPL`, else ngtcp2. */
  impl?: 'quiche' | 'ngtcp2';
  tuning?: QuicTuningOptions;
}

export interface QuicListener {
  readonly address: { address: string; port: number; family: 4 | 6 };
  /** Which library serves: the addon's ngtcp2 (default) or quiche (`OXY_QUIC_SERVER_IMPL=quiche`). */
  readonly impl: 'quiche' | 'ngtcp2';
  /** Live connections (quiche: handshaking ones included; ngtcp2: established ones). */
  connections(): QuicServerConnection[];
  /** ngtcp2: the addon's own counts (connections and routed CIDs it holds, refusals, resets sent). */
  nativeStats?(): ReturnType<Ngtcp2Listener['stats']>;
  /** Closes every connection with `code`/`reason` (default SHUTDOWN), then the socket. */
  close(code?: number, reason?: string): Promise<void>;
}

/**
 * Listens for QUIC tunnel connections; `onConnection` gets each one once its handshake
 * completed. The socket is bound before the first await, so the call may be made inside
 * withNetns (or pass a `socket` made there).
 */
export async function listenQuic(options: QuicListenOptions, onConnection: (conn: QuicServerConnection) => void): Promise<QuicListener> {
  checkServerIdentity(options.cert, options.key);
  // Offer and accept loopback-sized packets: each connector sends at most what it asked for
  // itself (1,350 unless it dialed a loopback address), and quiche sends it no more either.
  const tuning = { maxUdpPayloadSize: LOOPBACK_UDP_PAYLOAD, maxRecvUdpPayloadSize: LOOPBACK_UDP_PAYLOAD, ...options.tuning };
  const socketOptions = {
    address: options.host ?? '::',
    port: options.port ?? 0,
    ipv6Only: options.ipv6Only ?? false,
    reusePort: options.reusePort,
    recvBufferSize: options.socketBufferBytes ?? SOCKET_BUFFER_BYTES,
    sendBufferSize: options.socketBufferBytes ?? SOCKET_BUFFER_BYTES,
    maxDatagramSize: Math.max(2048, Math.max(tuning.maxUdpPayloadSize ?? 0, tuning.maxRecvUdpPayloadSize ?? 0) + 64),
  };
  const socket = options.socket ?? (options.fd !== undefined ? PktinfoUdpSocket.fromFd(options.fd, socketOptions) : PktinfoUdpSocket.bind(socketOptions));
  // The addon's server works on a duplicate of a real pktinfo socket (not a stand-in without an fd).
  if ((options.impl ?? quicServerImpl()) === 'ngtcp2' && socket.fd >= 0) return listenNgtcp2(options, socket, tuning, onConnection);
  const endpoint = new QuicEndpoint(socket, options.socket === undefined, options.gso ?? true);
  let config;
  try {
    config = buildQuicheConfig('server', { cert: options.cert, key: options.key }, tuning, options);
  } catch (err) {
    void endpoint.shutdown(0, '');
    if (err instanceof OxyError) throw err;
    throw new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `QUIC listener: bad certificate or key: ${(err as Error).message}`, { cause: err });
  }
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  endpoint.listen({
    config,
    retry: options.retry === false ? undefined : new RetryTokens(),
    resets: new StatelessResets(options.key),
    keepAliveMs: options.keepAliveMs ?? Math.floor(idleTimeoutMs / 3),
    onConnection,
    maxConnections: options.maxConnections ?? 10_000,
  });
  const address = socket.address();
  return {
    address,
    impl: 'quiche',
    connections: () => endpoint.connections(),
    close: (code = TunnelCloseCode.SHUTDOWN, reason = 'edge shutting down') => endpoint.shutdown(code, reason),
  };
}

function listenNgtcp2(
  options: QuicListenOptions,
  socket: PktinfoUdpSocket,
  tuning: QuicTuningOptions,
  onConnection: (conn: QuicServerConnection) => void,
): QuicListener {
  let listener: Ngtcp2Listener;
  try {
    listener = new Ngtcp2Listener({
      socket,
      ownsSocket: options.socket === undefined,
      cert: options.cert,
      key: options.key,
      settings: {
        ...quicSettings(tuning, options, 'ngtcp2'),
        gso: gsoWanted(options),
        gro: groWanted(options),
        pmtud: pmtudWanted(options),
        nearCwndUnit: edgeNearCwndUnit(),
      },
      retry: options.retry === false ? undefined : new RetryTokens(),
      resets: new StatelessResets(options.key),
      maxConnections: options.maxConnections ?? 10_000,
      onConnection,
    });
  } catch (err) {
    if (options.socket === undefined && !socket.closed) socket.close();
    if (err instanceof OxyError) throw err;
    throw new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `QUIC listener: ${(err as Error).message}`, { cause: err });
  }
  return {
    address: listener.address,
    impl: 'ngtcp2',
    connections: () => listener.connections(),
    nativeStats: () => listener.stats(),
    close: (code = TunnelCloseCode.SHUTDOWN, reason = 'edge shutting down') => listener.close(code, reason),
  };
}

/** UDP GSO on the addon's ngtcp2 sockets: `gso` (default true) unless OXY_QUIC_GSO=0, as for quiche's endpoint. */
const gsoWanted = (options: QuicSocketOptions): boolean => (options.gso ?? true) && process.env.OXY_QUIC_GSO !== '0';
/** UDP GRO on the addon's ngtcp2 sockets: `gro` (default true) unless OXY_QUIC_GRO=0 (docs/decisions.md "The vnet path's bulk (session 11)"). */
const groWanted = (options: QuicSocketOptions): boolean => (options.gro ?? true) && process.env.OXY_QUIC_GRO !== '0';
/** PMTUD on the addon's ngtcp2 connections: `pmtud` (default true) unless OXY_QUIC_PMTUD=0 (docs/decisions.md "... packet sizes (session 16)"). */
const pmtudWanted = (options: QuicSocketOptions): boolean => (options.pmtud ?? true) && process.env.OXY_QUIC_PMTUD !== '0';

/**
 * An ngtcp2 connector's window counted in NEAR_CWND_UNIT toward a near edge (the addon decides near
 * from the connection's path), unless OXY_QUIC_NEAR_CWND=0 (docs/decisions.md "The vnet path's -R: a
 * window frozen by slow start's luck").
 */
const nearCwndWanted = (): boolean => process.env.OXY_QUIC_NEAR_CWND !== '0';

/**
 * An ngtcp2 edge's window toward a near connector, in EDGE_NEAR_CWND_UNIT: `OXY_QUIC_EDGE_NEAR_CWND=0`
 * counts it in packets as toward any address, `=BYTES` in that unit (for pairs).
 */
const edgeNearCwndUnit = (): number => {
  const v = process.env.OXY_QUIC_EDGE_NEAR_CWND;
  return v === undefined || v === '' || !Number.isFinite(Number(v)) ? EDGE_NEAR_CWND_UNIT : Number(v);
};

/** BoringSSL takes an unusable certificate silently (every handshake fails later): check it now. */
function checkServerIdentity(cert: string, key: string): void {
  let problem: string | undefined;
  try {
    const leaf = new X509Certificate(cert);
    if (!leaf.checkPrivateKey(createPrivateKey(key))) problem = 'the key does not belong to the certificate';
  } catch (err) {
    problem = (err as Error).message;
  }
  if (problem) throw new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `QUIC listener: bad certificate or key: ${problem}`);
}
