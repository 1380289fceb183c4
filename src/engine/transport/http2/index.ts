export { Http2TunnelConnection, DATAGRAM_BUFFER_LIMIT } from './connection.js';
export { acceptHttp2Tunnel, dialHttp2Peer, dialHttp2Tunnel, H2_ALPN, serveHttp2Tunnel, type AcceptHttp2Options, type DialHttp2Options } from './dial.js';
export { Http2TunnelListener, type Http2TunnelListenerEvents, type Http2TunnelListenerOptions } from './listener.js';
export {
  CONNECTION_WINDOW,
  MAX_CONCURRENT_STREAMS,
  MAX_FRAME_SIZE,
  MAX_SESSION_MEMORY_MB,
  STREAM_WINDOW,
  tunnelSettings,
  type Http2TuningOptions,
} from './settings.js';
