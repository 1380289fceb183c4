/**
 * TCP_INFO of a connected TCP socket (`getsockopt(IPPROTO_TCP, TCP_INFO)`): retransmissions,
 * RTT, congestion window, which Node does not expose. The edge reads it from the sockets
 * it accepted just before they close, for `ingress.handleConnectionClose`.
 */
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { native, nativeAvailable } from './binding.js';

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

/**
 * The congestion control the TCP socket `fd` sends with (TCP_CONGESTION), after setting it to `name`
 * when given (a name the kernel refuses leaves it as it was); "" when `fd` is no TCP socket.
 */
export function tcpCongestion(fd: number, name?: string): string {
  return native().tcpCongestion(fd, name);
}

/** The fd under a net.Socket (on Node's internal handle); undefined when it has none (closed, or not fd-backed). */
export function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * A peer's reset (RST) that comes while bytes wait unread in `socket` is reported by libuv as an
 * end ('end', as a FIN), not ECONNRESET: after a short read with POLLHUP set it calls it EOF
 * without reading the error (libuv 1.46 uv__stream_io). The kernel still holds that error: from
 * here on the socket's end is checked, and one the kernel says was a reset destroys the socket
 * with its error instead ('error' ECONNRESET, as a read would have said), so that a flow carries
 * a reset as a reset (bytes the socket's reader has not taken yet go with it). An error after the peer's FIN (EPIPE:
 * the FIN was read first) is an end, as a read() says. Nothing changes without the addon.
 */
export function revealResets(socket: Socket): void {
  if (!nativeAvailable()) return;
  socket.push = pushRevealingResets;
}

function pushRevealingResets(this: Socket, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk === null) {
    const fd = socketFd(this);
    const errno = fd === undefined ? 0 : native().socketError(fd);
    if (errno !== 0 && errno !== constants.errno.EPIPE) {
      const code = getSystemErrorName(-errno);
      this.destroy(Object.assign(new Error(`read ${code}`), { errno: -errno, code, syscall: 'read' }));
      return false;
    }
  }
  return Socket.prototype.push.call(this, chunk, encoding);
}

/** SO_LINGER {1, 0} on the socket under `fd`: its last descriptor's close sends a reset (RST), not a FIN. */
export function resetOnClose(fd: number): void {
  native().resetOnClose(fd);
}

/**
 * OXY_FLOW_RESET_FLUSH: ms a flow's reset waits for the bytes the peer sent before it to leave the
 * socket (unset: 1,000; 0: off, the reset drops them at once; at most 10,000). The addon's flows
 * pump reads the same switch (quic-pump.cc ResetFlushNs).
 */
export const RESET_FLUSH_MS = Math.min(Number(process.env.OXY_FLOW_RESET_FLUSH || 1000) || 0, 10_000);

/**
 * Resets `socket` (RST) once what was written to it left: Node's buffer (writableLength) and the
 * kernel's send queue (SIOCOUTQ: its peer acked every byte), or after `boundMs` — a flow's peer
 * that sent and reset at once gets its bytes delivered, then the reset, as over a direct path.
 * Nothing more is read from it; nothing pending (or no addon to ask the kernel, and Node's buffer
 * empty): at once. Polled on a timer, 1 ms doubling to 64 ms.
 */
export function resetAfterFlush(socket: Socket, boundMs = RESET_FLUSH_MS): void {
  if (socket.destroyed) return;
  if (boundMs <= 0) return void socket.resetAndDestroy();
  // Corked writes (a turn's records, uncorked at setImmediate) go now, before the wait.
  while (socket.writableCorked > 0) socket.uncork();
  socket.pause();
  socket.on('error', ignoreError);
  const queued = (): number => {
    const fd = socketFd(socket);
    const kernel = fd !== undefined && nativeAvailable() ? native().socketOutQueue(fd) : 0;
    return socket.writableLength + Math.max(kernel, 0);
  };
  if (queued() === 0) return void socket.resetAndDestroy();
  const until = Date.now() + boundMs;
  let step = 1;
  const poll = (): void => {
    if (socket.destroyed) return;
    if (queued() === 0 || Date.now() >= until) return void socket.resetAndDestroy();
    step = Math.min(step * 2, 64);
    setTimeout(poll, Math.min(step, Math.max(until - Date.now(), 1))).unref();
  };
  setTimeout(poll, step).unref();
}

const ignoreError = (): void => undefined;

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

/** TCP_ESTABLISHED and TCP_CLOSE (the kernel's tcp_states.h). */
export const TCP_ESTABLISHED = 1;
export const TCP_CLOSE = 7;

export interface TcpWatch {
  /** How often to ask the kernel (ms). */
  everyMs: number;
  /** Whether work is in flight (only then is the kernel asked). */
  busy: () => boolean;
  /** Whether `state` means the connection is gone (default: anything but ESTABLISHED). */
  gone?: (state: number) => boolean;
  /** Told the state just before the socket is destroyed. */
  onGone?: (state: number) => void;
}

/**
 * Node's TLS socket never recovers from one failed write (nodejs/node#61304): TLSWrap keeps
 * that write "in progress" for good, so an HTTP/2 session on it waits on it, stops reading (the
 * reset or FIN goes unseen) and never closes; even session.destroy() waits for that write. While
 * `busy()` (what a failed write leaves), the kernel is asked every `everyMs` whether the TCP
 * connection under `socket` still exists; when it does not, destroying the socket cancels the
 * stuck write and the session closes. A socket with no TCP state (unix: `unix+tls:` origins) is
 * gone once its peer closed it both ways (no write can complete) and what it sent before is read,
 * or was not read at all since the last check (a stuck session reads nothing); `gone` is not asked
 * then. Stops when the socket closes, or at once without the addon. Returns a function that stops it.
 */
export function destroyWhenTcpGone(socket: Socket, o: TcpWatch): () => void {
  const gone = o.gone ?? ((state: number) => state !== TCP_ESTABLISHED);
  let tcp = true;
  let unread = -1;
  const stop = (): void => clearInterval(timer);
  const timer = setInterval(() => {
    if (socket.destroyed) return stop();
    if (!o.busy()) return;
    const fd = socketFd(socket);
    if (fd === undefined) return;
    let state = TCP_CLOSE;
    if (tcp) {
      try {
        state = tcpInfo(fd).state;
      } catch {
        if (!nativeAvailable()) return stop();
        tcp = false;
      }
    }
    if (tcp ? !gone(state) : !unixGone(fd)) return;
    stop();
    o.onGone?.(state);
    socket.destroy(new Error('Connection lost (TCP connection closed)'));
  }, o.everyMs).unref();
  const unixGone = (fd: number): boolean => {
    const was = unread;
    unread = native().unreadAfterHangUp(fd);
    return unread === 0 || (unread > 0 && unread === was);
  };
  socket.once('close', stop);
  return stop;
}
