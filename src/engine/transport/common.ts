import { OxyError } from '../../core/errors.js';
import type { AcceptStreamOptions, TunnelConnection, TunnelStream } from './types.js';

/** What both transports (HTTP/2, QUIC) do alike. */

export const abortedError = (): OxyError => new OxyError('OXY_ERR_ABORTED', 'The operation was aborted');

/** The first `maxBytes` of `text` as UTF-8, never splitting a code point (close reasons are bounded). */
export function truncateUtf8(text: string, maxBytes: number): Buffer {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= maxBytes) return buf;
  let end = maxBytes;
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--;
  return buf.subarray(0, end);
}

/**
 * Where the streams a peer opens go, for every transport: to a waiting acceptStream(),
 * else to the onStream handler, else into a backlog that the next of either drains.
 */
export class StreamInbox {
  #handler: ((stream: TunnelStream) => void) | undefined;
  readonly #backlog: TunnelStream[] = [];
  readonly #waiters: { resolve: (s: TunnelStream) => void; reject: (e: Error) => void }[] = [];

  onStream(handler: (stream: TunnelStream) => void): void {
    this.#handler = handler;
    for (const stream of this.#backlog.splice(0)) handler(stream);
  }

  deliver(stream: TunnelStream): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(stream);
    else if (this.#handler) this.#handler(stream);
    else this.#backlog.push(stream);
  }

  /** The next stream; rejects with `closed()` when the connection is gone, on abort or timeout. */
  accept(options: AcceptStreamOptions, closed: () => Error | undefined): Promise<TunnelStream> {
    const queued = this.#backlog.shift();
    if (queued) return Promise.resolve(queued);
    const gone = closed();
    if (gone) return Promise.reject(gone);
    if (options.signal?.aborted) return Promise.reject(abortedError());
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => done(abortedError());
      const done = (err: Error | null, stream?: TunnelStream): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(stream!);
      };
      const waiter = { resolve: (s: TunnelStream) => done(null, s), reject: (e: Error) => done(e) };
      this.#waiters.push(waiter);
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => done(new OxyError('OXY_ERR_PROTOCOL_TIMEOUT', `No stream from the peer within ${options.timeoutMs} ms`)), options.timeoutMs);
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The connection closed: every waiting accept fails with `err`. */
  fail(err: Error): void {
    for (const waiter of this.#waiters.splice(0)) waiter.reject(err);
  }
}

export interface SilenceWatch {
  /** How often the peer is probed (and the silence looked at). */
  everyMs: number;
  /** How long without an answer or a byte from the peer makes it silent. */
  silentMs: number;
  /** Called once, with how long the peer was silent; the watch has stopped. */
  onSilent(silentMs: number): void;
}

/**
 * Probes `conn` every `everyMs` and calls `onSilent` once it has gone `silentMs` without an
 * answer or a byte from its peer; stops by itself when the connection closes, or by the function
 * it returns. The verdict is looked at again after one turn of I/O (setImmediate runs after the
 * poll phase): timers run before it, so a process that was starved or busy for longer than
 * `silentMs` would call silent a peer whose bytes wait unread in its socket (a 20 MB upload's
 * connection closed at load 25 that way).
 */
export function watchSilence(conn: Pick<TunnelConnection, 'isClosed' | 'probe' | 'unansweredMs'>, o: SilenceWatch): () => void {
  let checking = false;
  const stop = () => clearInterval(watchdog);
  const watchdog = setInterval(() => {
    if (conn.isClosed) return stop();
    if (checking) return;
    if (conn.unansweredMs() <= o.silentMs) {
      void conn.probe().catch(() => undefined);
      return;
    }
    checking = true;
    setImmediate(() => {
      checking = false;
      if (conn.isClosed) return stop();
      const silent = conn.unansweredMs();
      if (silent <= o.silentMs) return;
      stop();
      o.onSilent(silent);
    });
  }, o.everyMs);
  watchdog.unref();
  return stop;
}
