/**
 * A listening TCP socket accepted by the addon (cpp/accept.cc): the edge's upgrade listener
 * (netns/upgrader.ts). Node's accept made a `net.Socket` per connection (its constructor, the
 * `onconnection` path, a `getpeername` for `remoteAddress`) only for the edge to hand its fd to a
 * QUIC pump a turn later: a quarter of the edge's main thread per new vnet connection. Here each
 * wake-up's connections come as (token, peer address, port) records, and each socket waits in the
 * addon under its token ({@link AcceptedTcp}) until a pump takes it, JS asks for a `net.Socket`,
 * or it is closed.
 */
import net from 'node:net';

import { native, nativeAvailable, type NativeTcpAcceptor } from './binding.js';
import type { NativeError } from './errors.js';
import { revealResets } from './tcp-info.js';

/** Bytes per accepted record: f64 token, u16 port, u8 address length (4 or 16), 16 address bytes from offset 16. */
const RECORD = 32;

/**
 * One accepted connection the addon holds. `socket()` makes it a `net.Socket` (for whatever needs
 * one); `token` is what a QUIC pump takes it by (FdPumpEvents.accepted); `destroy()` closes it
 * (as a socket's destroy: a FIN, or an RST with unread bytes), `resetAndDestroy()` with an RST.
 */
export class AcceptedTcp {
  #socket: net.Socket | undefined;
  #gone = false;
  /** Runs once when the connection is closed from this side (destroy, resetAndDestroy) before a pump or a socket took it. */
  onClose: (() => void) | undefined;

  constructor(
    private readonly acceptor: TcpAcceptor,
    readonly token: number,
  ) {}

  /** Closed, or handed on (a pump took it, or it became a socket that was destroyed since). */
  get destroyed(): boolean {
    return this.#socket ? this.#socket.destroyed : this.#gone;
  }

  /** Handed to a `net.Socket` (socket()) or to a pump (taken()). */
  get handedOn(): boolean {
    return this.#socket !== undefined || this.#gone;
  }

  /**
   * Its first bytes: `done` gets one chunk, or its end (no chunk, errno 0), or its error (errno).
   * False when it is not the addon's any more.
   */
  readFirst(done: (chunk: Buffer | undefined, errno: number) => void): boolean {
    if (this.#gone || this.#socket) return false;
    return this.acceptor.readFirst(this.token, done);
  }

  /** The connection as a `net.Socket` (half-open allowed, as the upgrade listener's sockets are), made once. */
  socket(): net.Socket {
    if (this.#socket) return this.#socket;
    const fd = this.#gone ? -1 : this.acceptor.take(this.token);
    this.#gone = true;
    if (fd < 0) {
      // Closed meanwhile: a socket that is already gone.
      const dead = new net.Socket();
      dead.destroy();
      return (this.#socket = dead);
    }
    this.#socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    // The device's reset is the flow's reset, also when its bytes were still unread.
    revealResets(this.#socket);
    return this.#socket;
  }

  /**
   * Sends with congestion control `name` (TCP_CONGESTION) from now on; false when it is not the
   * addon's any more or the kernel refused the name (not loaded, or not allowed to this process).
   */
  sendWith(name: string): boolean {
    if (this.#gone || this.#socket) return false;
    return this.acceptor.congestion(this.token, name);
  }

  /** A pump took the connection by its token: nothing here touches it any more. */
  taken(): void {
    this.#gone = true;
    this.acceptor.forget(this.token);
  }

  destroy(): void {
    this.#close(false);
  }

  resetAndDestroy(): void {
    this.#close(true);
  }

  #close(reset: boolean): void {
    if (this.#socket) {
      if (reset) this.#socket.resetAndDestroy();
      else this.#socket.destroy();
      return;
    }
    if (this.#gone) return;
    this.#gone = true;
    this.acceptor.drop(this.token, reset);
    const onClose = this.onClose;
    this.onClose = undefined;
    onClose?.();
  }
}

export interface TcpAcceptorEvents {
  /**
   * A connection from the address at `bytes[offset..offset + length]` (4 or 16 bytes; valid during
   * the call: no view made per connection) and `port`.
   */
  accepted(conn: AcceptedTcp, bytes: Uint8Array, offset: number, length: number, port: number): void;
  error(err: NativeError): void;
}

/** Whether this addon accepts natively (an older build has no TcpAcceptor). */
export const nativeAcceptAvailable = (): boolean => nativeAvailable() && native().TcpAcceptor !== undefined;

export class TcpAcceptor {
  readonly #handle: NativeTcpAcceptor;
  readonly #reads = new Map<number, (chunk: Buffer | undefined, errno: number) => void>();
  #closed = false;

  /** Takes ownership of `fd`, a listening TCP socket. */
  constructor(fd: number, events: TcpAcceptorEvents) {
    this.#handle = new (native().TcpAcceptor!)(fd);
    this.#handle.start(
      (records, count) => {
        for (let i = 0; i < count; i++) {
          const o = i * RECORD;
          const conn = new AcceptedTcp(this, records.readDoubleLE(o));
          events.accepted(conn, records, o + 16, records[o + 10]!, records.readUInt16LE(o + 8));
        }
      },
      (token, chunk, errno) => {
        const done = this.#reads.get(token);
        this.#reads.delete(token);
        done?.(chunk, errno);
      },
      (err) => events.error(err),
    );
    this.#handle.setEvents(true);
  }

  /** @internal */
  readFirst(token: number, done: (chunk: Buffer | undefined, errno: number) => void): boolean {
    if (this.#closed || !this.#handle.read(token)) return false;
    this.#reads.set(token, done);
    return true;
  }

  /** @internal */
  take(token: number): number {
    this.#reads.delete(token);
    return this.#closed ? -1 : this.#handle.take(token);
  }

  /** @internal */
  drop(token: number, reset: boolean): void {
    this.#reads.delete(token);
    if (!this.#closed) this.#handle.drop(token, reset);
  }

  /** @internal */
  congestion(token: number, name: string): boolean {
    return !this.#closed && this.#handle.congestion(token, name);
  }

  /**
   * First chunks read by the addon for QUIC pumps on this thread (every acceptor's): in the accept's
   * turn, with the flow's OPEN, or at a wake-up after it (OXY_FLOW_EARLY_AT_ACCEPT=0, or the request
   * came after the ACK).
   */
  earlyReads(): { accept: number; wake: number } {
    const [accept, wake] = this.#handle.earlyReads?.() ?? [0, 0];
    return { accept, wake };
  }

  /** @internal */
  forget(token: number): void {
    this.#reads.delete(token);
  }

  /** Stops accepting and closes the listener and every connection still waiting here. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reads.clear();
    this.#handle.close();
  }
}
