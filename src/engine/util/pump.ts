/**
 * Piping for the per-request hot path. `stream/promises` pipeline() costs tens of
 * microseconds per call on Node 20 (it aborts an internal AbortController on completion,
 * which builds a DOMException), a large share of a proxied small request. These do the
 * same job with plain pipe() and listeners.
 */
import { Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';

/**
 * Destroys `s` for a failure; a TCP socket is reset (RST), so that its peer does not take the cut
 * for a clean end of the data (a FIN). A socket on another handle (unix, TLS) is destroyed.
 */
export function cut(s: Readable | Writable): void {
  if (s instanceof Socket && !s.destroyed) {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // Not a TCP handle: ERR_INVALID_HANDLE_TYPE.
    }
  }
  s.destroy();
}

/**
 * How a copy from `src` into `dst` ends, shared by pump() and relay(): `settle()` once, with an
 * error when either side errors or `dst` closes unfinished (both are then destroyed), without one
 * when `dst` finished (unless `onFinish` is false: the caller settles). `cleanup` drops the
 * caller's own listeners. `reset`: a failure resets TCP sockets (`cut`) instead of ending them.
 */
function copyEnd(
  src: Readable,
  dst: Writable,
  done: { resolve: () => void; reject: (err: Error) => void; cleanup?: () => void; onFinish?: boolean; reset?: boolean },
): (err?: Error) => void {
  let settled = false;
  const settle = (err?: Error): void => {
    if (settled) return;
    settled = true;
    src.off('error', settle);
    dst.off('error', settle);
    dst.off('finish', onFinish);
    dst.off('close', onClose);
    done.cleanup?.();
    if (err) {
      if (done.reset) {
        cut(src);
        cut(dst);
      } else {
        src.destroy();
        dst.destroy();
      }
      done.reject(err);
    } else done.resolve();
  };
  const onFinish = (): void => settle();
  const onClose = (): void => settle(dst.writableFinished ? undefined : Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
  src.on('error', settle);
  dst.on('error', settle);
  if (done.onFinish !== false) dst.once('finish', onFinish);
  dst.once('close', onClose);
  return settle;
}

/**
 * Pipes `src` into `dst`; resolves when `dst` finished, rejects when either errors or
 * `dst` closes first. On failure both are destroyed.
 */
export function pump(src: Readable, dst: Writable, options: { end?: boolean; reset?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = copyEnd(src, dst, { resolve, reject, onFinish: options.end !== false, reset: options.reset });
    if (options.end === false) {
      src.once('end', () => {
        src.unpipe(dst);
        settle();
      });
    }
    src.pipe(dst, { end: options.end !== false });
  });
}

/**
 * What a private flow's relay (the edge's upgraded socket, the connector's dial) lets queue per
 * direction before its source pauses. OXY_IP_RELAY_UNSENT=0: pipe() at the 16 KiB high-water
 * mark, as before (for A/B runs).
 */
export const FLOW_UNSENT = process.env.OXY_IP_RELAY_UNSENT === '0' ? 0 : 1024 * 1024;

/**
 * As pump(), but `src` pauses only while `dst` holds more than `unsent` bytes, not at its
 * high-water mark (16 KiB for sockets and HTTP/2 streams): a bulk flow's 64 KiB reads each
 * stopped and restarted reading the source (two epoll_ctl and an EAGAIN read on a socket).
 * Memory per direction stays bounded by `unsent` plus one chunk. `reset`: a failure resets TCP
 * sockets (a private flow cut: its peers must see a reset, not an end).
 */
export function relay(src: Readable, dst: Writable, unsent: number, reset = false): Promise<void> {
  return new Promise((resolve, reject) => {
    let waiting = false;
    const onData = (chunk: Buffer): void => {
      dst.write(chunk);
      if (!waiting && dst.writableLength > unsent) {
        waiting = true;
        src.pause();
        dst.once('drain', onDrain);
      }
    };
    const onDrain = (): void => {
      waiting = false;
      src.resume();
    };
    const onEnd = (): void => void dst.end();
    copyEnd(src, dst, {
      resolve,
      reject,
      reset,
      cleanup: () => {
        src.off('data', onData);
        src.off('end', onEnd);
        dst.off('drain', onDrain);
      },
    });
    src.on('data', onData);
    if (src.readableEnded) onEnd();
    else src.once('end', onEnd);
    src.resume();
  });
}

/**
 * Pipes both ways (each direction half-closes on its own); either side failing tears both down.
 * `unsent`: relay() in both directions with that bound instead of pipe(). `reset`: the
 * teardown resets TCP sockets (`cut`).
 */
export function bridge(a: Duplex, b: Duplex, options: { unsent?: number; reset?: boolean } = {}): Promise<void> {
  const end = options.reset ? cut : (s: Duplex) => s.destroy();
  const one = (src: Duplex, dst: Duplex): Promise<void> =>
    options.unsent ? relay(src, dst, options.unsent, options.reset) : pump(src, dst, { reset: options.reset });
  return Promise.all([one(a, b).catch(() => end(b)), one(b, a).catch(() => end(a))]).then(() => undefined);
}
