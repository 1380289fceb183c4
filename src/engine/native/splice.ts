/**
 * A byte relay between two connected sockets that runs in the kernel: splice(2) through a pipe
 * each way, on the addon's relay thread (cpp/splice.cc). The payload is never copied into user
 * space and no JS runs per chunk — for a CONNECT tunnel to a direct destination, where no hook
 * needs the bytes (issue 16).
 *
 * Node keeps both sockets, their listeners and their close: reading stops, what Node had
 * already read is written to the other side first, and the relay works on dups of the fds.
 * Destroying either socket cancels the relay. `socketBytes` includes the relayed bytes (live),
 * so logs and close statistics count them. Setting a relay up costs ~60 µs of CPU: the edge
 * hands a tunnel over only once it carries bulk (edge/pipeline/intercept.ts).
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { native, nativeAvailable } from './binding.js';
import type { NativeError } from './errors.js';
import { socketFd } from './tcp-info.js';

/**
 * Pipe size per direction: the most one splice call moves, and what a direction holds in flight.
 * 1 MiB measured ~25 % less proxy CPU per MB than 256 KiB, but a user without CAP_SYS_RESOURCE
 * has 64 MiB of pipes in all (fs.pipe-user-pages-soft; beyond it new pipes shrink to 8 KiB):
 * 256 KiB leaves room for ~128 tunnels.
 */
export const SPLICE_PIPE_BYTES = 256 * 1024;

export interface SpliceOutcome {
  /** Bytes delivered from the first socket to the second, and back. */
  aToB: number;
  bToA: number;
  /** The system call that failed (a reset, a broken pipe); both sockets should be destroyed. */
  error?: NativeError;
  /** A socket was destroyed while the relay ran. */
  cancelled: boolean;
}

/** The relay's live counters, and which of them this socket read (the other it wrote). */
const relayed = new WeakMap<Socket, { counters: BigUint64Array; read: 0 | 1 }>();

/** Bytes read from and written to `s`, including those a relay moved in the kernel. */
export function socketBytes(s: Socket): { read: number; written: number } {
  let read = s.bytesRead ?? 0;
  let written = s.bytesWritten ?? 0;
  const r = relayed.get(s);
  if (r) {
    read += Number(r.counters[r.read]);
    written += Number(r.counters[1 - r.read]);
  }
  return { read, written };
}

let available: boolean | undefined;

/** A plain TCP (or Unix stream) socket with an fd: not TLS (its bytes are not the wire's), not a JS stream. */
const spliceable = (s: Socket): boolean => !(s instanceof TLSSocket) && !s.destroyed && socketFd(s) !== undefined;

/**
 * Relays a ⇄ b in the kernel until both directions ended (each end passed on as a half-close),
 * one failed, or either socket was destroyed. Undefined when it cannot here (no addon, a socket
 * without an fd or with writes still pending): use stream pipes instead. The caller destroys
 * both sockets once the promise settles.
 */
export function spliceSockets(a: Socket, b: Socket, o: SpliceOptions = {}): Promise<SpliceOutcome> | undefined {
  available ??= nativeAvailable();
  if (!available || !spliceable(a) || !spliceable(b) || a.writableLength || b.writableLength) return undefined;
  stopReading(a);
  stopReading(b);
  return relay(a, b, o.pipeBytes ?? SPLICE_PIPE_BYTES, o.copy ?? false);
}

export interface SpliceOptions {
  /** Pipe (or copy buffer) size per direction. Default SPLICE_PIPE_BYTES. */
  pipeBytes?: number;
  /**
   * Copy through a buffer on the relay thread instead of splicing. Cheaper for the whole host
   * when a sender is on it (loopback): a spliced page reaches the receiver still referenced, so
   * the sender cannot recycle it and the receiver reads it cache-cold (the origin's CPU per MB
   * ×1.5–2, curl's ×1.4 — more than the copy costs the relay).
   */
  copy?: boolean;
}

/** Stops Node reading the socket at all (a paused stream still reads up to its high-water mark). */
export function stopReading(s: Socket): void {
  s.pause();
  const handle = (s as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle?.reading) {
    handle.reading = false;
    handle.readStop?.();
  }
}

async function relay(a: Socket, b: Socket, pipeBytes: number, copy: boolean): Promise<SpliceOutcome> {
  const outcome = (error?: NativeError, cancelled = false): SpliceOutcome => ({ aToB: 0, bToA: 0, error, cancelled });
  // What Node read before it stopped (the CONNECT's trailing bytes, a server's banner) goes first.
  for (const [from, to] of [
    [a, b],
    [b, a],
  ]) {
    if (!from.readableLength) continue;
    const chunk = from.read() as Buffer | null;
    // read() may start reading again; stopped in the same tick, before the loop polls the fd.
    stopReading(from);
    if (!chunk) continue;
    const failed = await new Promise<Error | null | undefined>((resolve) => to.write(chunk, resolve));
    if (failed) return outcome(undefined, true);
  }
  const fdA = socketFd(a);
  const fdB = socketFd(b);
  if (fdA === undefined || fdB === undefined || a.destroyed || b.destroyed) return outcome(undefined, true);
  const counters = new BigUint64Array(2);
  return new Promise<SpliceOutcome>((resolve) => {
    let id = 0;
    const cancel = () => native().cancelSplice(id);
    try {
      id = native().spliceSockets(
        fdA,
        fdB,
        pipeBytes,
        counters,
        (error, aToB, bToA, cancelled) => {
          a.off('close', cancel);
          b.off('close', cancel);
          resolve({ aToB, bToA, error: error ?? undefined, cancelled });
        },
        copy,
      );
    } catch (err) {
      // Out of fds for the dups or pipes: the caller closes the connection.
      resolve(outcome(err as NativeError));
      return;
    }
    relayed.set(a, { counters, read: 0 });
    relayed.set(b, { counters, read: 1 });
    a.once('close', cancel);
    b.once('close', cancel);
  });
}
