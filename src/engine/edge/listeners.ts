import { Http2TunnelListener } from '../transport/http2/index.js';
import { splitHostPort } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { StartTunnelListener } from './server.js';

/** The HTTP/2-over-TLS tunnel listener as an edge listener. */
export function http2TunnelListener(listen: string, tls: { key: string; cert: string }, log: Logger): StartTunnelListener {
  return async (onConnection) => {
    const listener = new Http2TunnelListener({ key: tls.key, cert: tls.cert });
    listener.on('connection', onConnection);
    listener.on('connectionError', (err) => log.debug({ err }, 'tunnel connection failed before registration'));
    const { host, port } = splitHostPort(listen);
    const address = await listener.listen(port, host);
    return { protocol: 'http2', address, close: () => listener.close() };
  };
}
