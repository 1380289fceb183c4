/**
 * Piping for the per-request hot path. `stream/promises` pipeline() costs tens of
 * microseconds per call on Node 20 (it aborts an internal AbortController on completion,
 * which builds a DOMException), a large share of a proxied small request. These do the
 * same job with plain pipe() and listeners.
 */
import type { Duplex, Readable, Writable } from 'node:stream';

/**
 * Pipes `src` into `dst`; resolves when `dst` finished, rejects when either errors or
 * `dst` closes first. On failure both are destroyed.
 */
export function pump(src: Readable, dst: Writable, options: { end?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      src.off('error', onError);
      dst.off('error', onError);
      dst.off('finish', onFinish);
      dst.off('close', onClose);
      if (err) {
        src.destroy();
        dst.destroy();
        reject(err);
      } else resolve();
    };
    const onError = (err: Error) => settle(err);
    const onFinish = () => settle();
    const onClose = () => settle(dst.writableFinished ? undefined : Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    src.on('error', onError);
    dst.on('error', onError);
    if (options.end === false) {
      src.once('end', () => {
        src.unpipe(dst);
        settle();
      });
    } else {
      dst.once('finish', onFinish);
    }
    dst.once('close', onClose);
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
 * Memory per direction stays bounded by `unsent` plus one chunk.
 */
export function relay(src: Readable, dst: Writable, unsent: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
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
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      dst.off('error', onError);
      dst.off('finish', onFinish);
      dst.off('close', onClose);
      dst.off('drain', onDrain);
      if (err) {
        src.destroy();
        dst.destroy();
        reject(err);
      } else resolve();
    };
    const onError = (err: Error): void => settle(err);
    const onFinish = (): void => settle();
    const onClose = (): void => settle(dst.writableFinished ? undefined : Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    src.on('error', onError);
    dst.on('error', onError);
    dst.once('finish', onFinish);
    dst.once('close', onClose);
    src.on('data', onData);
    if (src.readableEnded) onEnd();
    else src.once('end', onEnd);
    src.resume();
  });
}

/**
 * Pipes both ways (each direction half-closes on its own); either side failing tears both down.
 * `unsent`: relay() in both directions with that bound instead of pipe().
 */
export function bridge(a: Duplex, b: Duplex, options: { unsent?: number } = {}): Promise<void> {
  const one = (src: Duplex, dst: Duplex): Promise<void> => (options.unsent ? relay(src, dst, options.unsent) : pump(src, dst));
  return Promise.all([one(a, b).catch(() => b.destroy()), one(b, a).catch(() => a.destroy())]).then(() => undefined);
}
