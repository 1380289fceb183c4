import { isIPv6, type AddressInfo, type Socket } from 'node:net';
import { Http2TunnelListener } from '../transport/http2/index.js';
import { listenQuic } from '../transport/quic/index.js';
import { splitHostPort } from '../../core/address.js';
import { isOxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import type { StartTunnelListener } from './server.js';
import type { ListenOptions } from '../native/reuseport.js';

/**
 * The HTTP/2-over-TLS tunnel listener as an edge listener; with `peerCa` it also takes peer
 * links from other edges of the store (forwarding.ts). `name`: what it is called in the logs
 * (a worker's private listener for its siblings' peer links is `peer`). `placed`: it does not
 * listen itself, it serves the connections given to the function it registers — a worker of
 * `edge run --workers`, whose primary accepts on `listen` and places each connection in a worker.
 */
export function http2TunnelListener(
  listen: string,
  tls: { key: string; cert: string; peerCa?: string },
  log: Logger,
  o: ListenOptions & { name?: string; placed?: (adopt: (socket: Socket) => void) => void } = {},
): StartTunnelListener {
  return async (onConnection) => {
    const listener = new Http2TunnelListener({ key: tls.key, cert: tls.cert, peerCa: tls.peerCa });
    listener.on('connection', (conn) => onConnection(conn));
    listener.on('peer', (conn, edgeId) => onConnection(conn, edgeId));
    listener.on('connectionError', (err) =>
      isOxyError(err, 'OXY_ERR_PEER_REFUSED')
        ? log.debug({ reason: err.message }, 'Refused a client certificate on the tunnel listener')
        : log.debug({ err }, 'tunnel connection failed before registration'),
    );
    // After listen: accept failures (EMFILE) are logged; the listener keeps accepting.
    listener.on('error', (err) => log.error({ err }, 'Tunnel listener error'));
    const { host, port } = splitHostPort(listen);
    let address: AddressInfo;
    if (o.placed) {
      o.placed((socket) => listener.adopt(socket));
      address = { address: host, port, family: isIPv6(host) ? 'IPv6' : 'IPv4' };
    } else address = await listener.listen(port, host, o);
    return { protocol: o.name ?? 'http2', address, close: () => listener.close() };
  };
}

/**
 * The QUIC tunnel listener on UDP, on the same port as the TLS listener started before it
 * (as cloudflared's edge serves both on 7844), answering each client from the address it
 * dialed (IP_PKTINFO). A worker (`edge run --workers`) takes its socket of the primary's
 * SO_REUSEPORT group (`fd`), so the kernel keeps each client's 4-tuple on one worker. The addon's
 * ngtcp2 server by default; quiche with `OXY_QUIC_SERVER_IMPL=quiche` (the log line names it).
 */
export function quicTunnelListener(
  listen: string,
  tls: { key: string; cert: string },
  log: Logger,
  o: ListenOptions & { fd?: number } = {},
): StartTunnelListener {
  return async (onConnection, started) => {
    const { host } = splitHostPort(listen);
    const port = started[0]?.address.port ?? splitHostPort(listen).port;
    const listener = await listenQuic({ cert: tls.cert, key: tls.key, host, port, reusePort: o.reusePort, fd: o.fd }, onConnection);
    log.debug({ port, library: listener.impl }, 'QUIC listener bound');
    return {
      protocol: 'quic',
      address: listener.address,
      quicServer: listener.impl,
      close: () => listener.close(),
    };
  };
}
