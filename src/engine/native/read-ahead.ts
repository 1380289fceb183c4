/**
 * A socket that always drains its TCP connection, read ahead on the addon's thread
 * (cpp/readahead.cc): what the connector's HTTP/2 session runs on so that Node's http2 never
 * deadlocks with large windows, with no JS between TLS and nghttp2 (issue 16).
 *
 * The returned socket is one end of a socketpair; TLS over it is native (TLSWrap on a pipe
 * handle). The thread reads the TCP socket whenever it has bytes, queueing up to
 * `maxQueuedBytes` for Node, and writes what Node sends at the pace the peer reads. Node keeps
 * the TCP socket (addresses, close): it no longer reads it, and destroying it cancels the
 * relay. `ended` settles once the relay stopped: a failure (a reset) carries the errno, and the
 * caller should destroy the stream it runs over the returned socket with it.
 *
 * Where the relays run (`placement`; the first relay of the process decides for all): 'auto'
 * runs them in native code on this thread's event loop — a small message then wakes no other
 * thread — and on the relay thread while bulk flows (more than 8 MiB in 100 ms; back after a
 * window under 2 MiB); 'thread' and 'inline' keep them in one place (A/B runs).
 */
import net, { type Socket } from 'node:net';
import { native, nativeAvailable } from './binding.js';
import type { NativeError } from './errors.js';
import { stopReading } from './splice.js';
import { socketFd } from './tcp-info.js';

export type ReadAheadPlacement = 'auto' | 'thread' | 'inline';

export interface ReadAheadSocket {
  /** Node's end of the pair: run TLS (or anything) over it as over the TCP socket. */
  socket: Socket;
  /** The relay stopped: both directions ended, one failed, or it was cancelled. */
  ended: Promise<{ error?: NativeError; cancelled: boolean }>;
}

/** How long the relay may outlive the returned socket, waiting for the peer's FIN after ours. */
export const READ_AHEAD_LINGER_MS = 5_000;

let available: boolean | undefined;

/**
 * Moves `tcp` (connected, nothing read or written yet) under a read-ahead relay; undefined when
 * it cannot here (no addon): the caller then reads ahead in JS.
 */
export function readAheadSocket(tcp: Socket, maxQueuedBytes: number, placement: ReadAheadPlacement = 'auto'): ReadAheadSocket | undefined {
  available ??= nativeAvailable();
  const fd = socketFd(tcp);
  if (!available || fd === undefined || tcp.destroyed || tcp.readableLength || tcp.writableLength) return undefined;
  stopReading(tcp);
  let id = 0;
  let fdOurs: number;
  let settle!: (outcome: { error?: NativeError; cancelled: boolean }) => void;
  const ended = new Promise<{ error?: NativeError; cancelled: boolean }>((resolve) => (settle = resolve));
  const cancel = (): void => native().cancelReadAhead(id);
  try {
    [id, fdOurs] = native().readAhead(
      fd,
      maxQueuedBytes,
      (error, cancelled) => {
        tcp.off('close', cancel);
        clearTimeout(linger);
        tcp.destroy();
        settle({ error: error ?? undefined, cancelled });
      },
      placement,
    );
  } catch {
    // Out of fds for the dup or the pair: the JS read-ahead still works.
    tcp.resume();
    return undefined;
  }
  let linger: NodeJS.Timeout | undefined;
  const socket = new net.Socket({ fd: fdOurs, readable: true, writable: true });
  socket.once('close', () => {
    linger = setTimeout(cancel, READ_AHEAD_LINGER_MS).unref();
  });
  tcp.once('close', cancel);
  return { socket, ended };
}
