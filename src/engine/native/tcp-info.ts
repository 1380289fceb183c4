/**
 * TCP_INFO of a connected TCP socket (`getsockopt(IPPROTO_TCP, TCP_INFO)`): retransmissions,
 * RTT, congestion window, which Node does not expose. The edge reads it from the sockets
 * it accepted just before they close, for `ingress.handleConnectionClose`.
 */
import type { Socket } from 'node:net';
import { native } from './binding.js';

/** The fields of `struct tcp_info` the engine reports (times in microseconds). */
export interface TcpInfo {
  /** TCP state (1 ESTABLISHED, 4 FIN_WAIT1, 8 CLOSE_WAIT, … as in the kernel's tcp_states.h). */
  state: number;
  /** Segments retransmitted over the connection's life (`tcpi_total_retrans`). */
  totalRetrans: number;
  /** Consecutive timeouts of the oldest unacknowledged segment (`tcpi_retransmits`). */
  retransmits: number;
  lost: number;
  unacked: number;
  /** Smoothed round-trip time and its mean deviation. */
  rttUs: number;
  rttVarUs: number;
  rtoUs: number;
  sndMss: number;
  sndCwnd: number;
}

/** TCP_INFO of the TCP socket `fd`; throws a NativeError (`ENOTSOCK`, `EOPNOTSUPP`, …) otherwise. */
export function tcpInfo(fd: number): TcpInfo {
  return native().tcpInfo(fd);
}

/** The fd under a net.Socket (on Node's internal handle); undefined when it has none (closed, or not fd-backed). */
export function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Reads TCP_INFO from `socket` at the last moment its fd is open: when the stream is
 * destroyed (`_destroy`, which closes the handle) — before `close` is emitted, when the fd
 * is gone. Returns a getter: the figures once the socket was destroyed, undefined before,
 * or when they could not be read (no addon, not TCP).
 */
export function tcpInfoAtClose(socket: Socket): () => TcpInfo | undefined {
  let info: TcpInfo | undefined;
  const destroy = socket._destroy;
  socket._destroy = function (this: Socket, err: Error | null, cb: (err?: Error | null) => void) {
    const fd = socketFd(this);
    if (fd !== undefined) {
      try {
        info = tcpInfo(fd);
      } catch {
        // No addon on this platform, or not a TCP socket: the figures stay unknown.
      }
    }
    destroy.call(this, err, cb);
  };
  return () => info;
}
