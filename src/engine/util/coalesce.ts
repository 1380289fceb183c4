/**
 * A tunnel stream delivers what one TLS read decrypted as several chunks in one event-loop
 * turn (one per TLS record or HTTP/2 DATA frame: ~16 KiB). Written one by one, each costs a
 * write() and, to a local receiver, a trip through its TCP stack. Corked until the turn's
 * I/O is done, they leave as one writev.
 */
import type { Readable } from 'node:stream';
import type { Socket } from 'node:net';

/** Corks `dst` at the first chunk `src` emits in a turn and uncorks it after the turn's I/O. */
export function coalesceWrites(src: Readable, dst: Socket): void {
  let corked = false;
  const uncork = () => {
    corked = false;
    dst.uncork();
  };
  // Registered before pipe()'s own 'data' listener, so the cork comes before the write.
  src.on('data', () => {
    if (corked || dst.destroyed) return;
    corked = true;
    dst.cork();
    setImmediate(uncork);
  });
}
