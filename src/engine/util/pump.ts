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

/** Pipes both ways (each direction half-closes on its own); either side failing tears both down. */
export function bridge(a: Duplex, b: Duplex): Promise<void> {
  return Promise.all([pump(a, b).catch(() => b.destroy()), pump(b, a).catch(() => a.destroy())]).then(() => undefined);
}
