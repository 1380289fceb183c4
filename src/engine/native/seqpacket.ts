/**
 * AF_UNIX SOCK_SEQPACKET sockets (Node's net.Socket refuses them): reliable,
 * ordered, message boundaries kept, file descriptors passed with SCM_RIGHTS.
 *
 * Paths starting with '\0' are abstract names (no file). Peer close is detected
 * with POLLRDHUP, and a zero-length message is delivered as a message, not taken
 * for end-of-stream (the addon tells them apart by SCM_CREDENTIALS, see
 * cpp/seqpacket.cc).
 */
import { EventEmitter } from 'node:events';
import { lstatSync, unlinkSync } from 'node:fs';
import { OxyError } from '../../core/errors.js';

import { native, type NativeSeqpacketServer, type NativeSeqpacketSocket } from './binding.js';
import { closedError, type NativeError } from './errors.js';
import { SendQueue } from './send-queue.js';
import { QueuedEndpoint } from './endpoint.js';
import type { FastNat } from './fast-nat.js';

const NO_FDS: readonly number[] = Object.freeze([]);

export interface SeqpacketSocketOptions {
  /** Largest message received whole; a longer one is dropped with an EMSGSIZE 'error'. Default 256 KiB. */
  maxMessageSize?: number;
  /** Most messages read per wake-up. Default 64. */
  batchSize?: number;
  recvBufferSize?: number;
  sendBufferSize?: number;
  /** Messages kept while the peer is not reading; more are dropped and counted. Default 4096. */
  maxQueuedMessages?: number;
}

export interface SeqpacketSocketEvents {
  /**
   * One message. `data` is a view into a buffer shared by the messages of one
   * wake-up. `fds` arrived with it (SCM_RIGHTS, O_CLOEXEC) and now belong to the
   * listener: wrap them or closeFd() them.
   */
  message: [data: Buffer, fds: readonly number[]];
  /**
   * The fast path this socket joined registered flows at their SYNs in this read batch (native
   * SYNs, fast-nat.ts): emitted before the batch's messages, so the flows are known to JS first.
   */
  born: [];
  /** Send queue emptied after send() returned false. */
  drain: [];
  /** The peer closed (or shut down writing); every message it sent was delivered first. */
  end: [];
  error: [err: NativeError];
  close: [];
}

interface QueuedMessage {
  data: Uint8Array;
  /** Our own dup()s, closed once sent, so the caller may close its fds at once. */
  fds: readonly number[];
}

export class SeqpacketSocket extends QueuedEndpoint<SeqpacketSocketEvents, NativeSeqpacketSocket, QueuedMessage> {
  private ending = false;
  private peerEnded = false;
  private readonly sendQueued = (items: readonly QueuedMessage[], start: number) => {
    const handle = this.open();
    let i = start;
    while (i < items.length) {
      let sent: boolean;
      try {
        sent = handle.send(items[i]!.data, items[i]!.fds);
      } catch (err) {
        (err as NativeError).index = i;
        closeAll(items[i]!.fds);
        throw err;
      }
      if (!sent) break;
      closeAll(items[i]!.fds);
      i++;
    }
    return i - start;
  };
  private readonly reportError = (err: NativeError) => this.emit('error', err);

  private constructor(handle: NativeSeqpacketSocket, options: SeqpacketSocketOptions) {
    super(handle, new SendQueue(options.maxQueuedMessages ?? 4096, (m) => ({ data: Buffer.from(m.data), fds: m.fds })));
    if (options.recvBufferSize !== undefined || options.sendBufferSize !== undefined) {
      handle.setBufferSizes(options.recvBufferSize, options.sendBufferSize);
    }
    handle.start(
      (data, offsets, count, fds, born) => {
        if (born) this.emit('born');
        this.deliver(data, offsets, count, fds);
      },
      () => this.flushQueue(),
      () => this.onEnd(),
      this.reportError,
    );
    this.updateEvents();
  }

  /** Connects to a listening path (or '\0abstract'). EAGAIN if its backlog is full. */
  static connect(path: string, options: SeqpacketSocketOptions = {}): SeqpacketSocket {
    return SeqpacketSocket.fromFd(native().seqpacketConnect(path), options);
  }

  /** A connected pair (socketpair), e.g. one end to keep and one to hand to a child. */
  static pair(options: SeqpacketSocketOptions = {}): [SeqpacketSocket, SeqpacketSocket] {
    const [a, b] = native().seqpacketPair();
    return [SeqpacketSocket.fromFd(a, options), SeqpacketSocket.fromFd(b, options)];
  }

  /** Wraps a SOCK_SEQPACKET fd (e.g. one received over SCM_RIGHTS) and takes ownership of it. */
  static fromFd(fd: number, options: SeqpacketSocketOptions = {}): SeqpacketSocket {
    const addon = native();
    let handle: NativeSeqpacketSocket;
    try {
      handle = new addon.SeqpacketSocket(fd, {
        maxMessageSize: options.maxMessageSize ?? 256 * 1024,
        batchSize: options.batchSize ?? 64,
      });
    } catch (err) {
      addon.closeFd(fd);
      throw err;
    }
    return new SeqpacketSocket(handle, options);
  }

  get fd(): number {
    return this.handle?.fd ?? -1;
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  /**
   * Sends one message, with file descriptors if given (they stay the caller's).
   * Returns true when sent, false when queued behind a full socket ('drain'
   * follows). Throws a NativeError (EPIPE after the peer closed, EMSGSIZE, …).
   */
  send(data: Uint8Array, fds: readonly number[] = NO_FDS): boolean {
    const handle = this.open();
    if (this.ending) throw closedError('SeqpacketSocket (ended)');
    if (this.queue.length === 0 && handle.send(data, fds)) return true;
    const owned = fds.map((fd) => native().dupFd(fd));
    if (this.queue.pushFrom([{ data, fds: owned }], 0) === 0) closeAll(owned);
    this.updateEvents();
    return false;
  }

  /**
   * Lets `nat` take this socket's packets of its registered flows before they become
   * 'message's, and send theirs to it (see fast-nat.ts). Returns the id to register flows under.
   * `partialChecksums`: the client writes TCP packets to its TUN as CHECKSUM_PARTIAL (a device
   * relay on a TUN with partialChecksums), so the kernel's partial sums may go to it unsummed.
   * `sendsPartial`: the client may send TCP packets whose checksums its TUN left partial (a relay
   * after `sendPartial()`): the addon sums each that the fast path does not write to a TUN that
   * takes them so, before it becomes a 'message'.
   */
  joinFastNat(nat: FastNat, partialChecksums = false, sendsPartial = false): number {
    return this.open().joinFastNat(nat.handle, partialChecksums, sendsPartial);
  }

  /**
   * Takes the client's TUN, whose fd it passed over this socket (warp's tunHandoff), and owns the
   * fd from here on (closed on refusal too): the socket reads that TUN itself, its packets
   * becoming 'message's (through the fast NAT as the socket's own), and `writeTun` writes to it.
   * Throws (the message says why) unless it is an attached IFF_TUN|IFF_NO_PI|IFF_VNET_HDR TUN with
   * a 10-byte header. Its reads and writes never wait, whatever the client does to the file.
   */
  adoptTun(fd: number): void {
    if (!this.handle) {
      native().closeFd(fd);
      throw closedError('SeqpacketSocket');
    }
    this.handle.adoptTun(fd);
  }

  /** Writes one IP packet to the TUN `adoptTun` took: false when it did not take it (lost). */
  writeTun(packet: Uint8Array): boolean {
    return this.open().writeTun(packet);
  }

  get queuedMessages(): number {
    return this.queue.length;
  }

  get droppedMessages(): number {
    return this.queue.dropped;
  }

  /** Half-close: once queued messages are sent, the peer sees end-of-stream. */
  end(): void {
    if (!this.handle || this.ending) return;
    this.ending = true;
    if (this.queue.length === 0) this.handle.shutdown();
  }

  /** Queued messages own dup()s of their fds. */
  protected override disposeQueued(item: QueuedMessage): void {
    closeAll(item.fds);
  }

  private deliver(data: Buffer, offsets: Uint32Array, count: number, fds: (number[] | undefined)[] | undefined): void {
    for (let i = 0; i < count; i++) {
      // A listener may close us mid-batch; fds it will never see must not leak.
      if (!this.handle) {
        if (fds) for (let j = i; j < count; j++) closeAll(fds[j] ?? NO_FDS);
        return;
      }
      this.emit('message', data.subarray(offsets[i]!, offsets[i + 1]!), fds?.[i] ?? NO_FDS);
    }
  }

  // Like net.Socket without allowHalfOpen: after the peer's end, send what is
  // still queued (or what an 'end' listener sends), then close.
  private onEnd(): void {
    this.peerEnded = true;
    this.emit('end');
    if (this.queue.length === 0) this.close();
  }

  private open(): NativeSeqpacketSocket {
    if (!this.handle) throw closedError('SeqpacketSocket');
    return this.handle;
  }

  private flushQueue(): void {
    if (!this.handle) return;
    if (this.queue.flush(this.sendQueued, this.reportError)) {
      if (this.peerEnded) {
        this.close();
        return;
      }
      if (this.ending) this.handle?.shutdown();
      this.emit('drain');
    }
    this.updateEvents();
  }
}

export interface SeqpacketServerOptions {
  backlog?: number;
  /** Options for every accepted socket. */
  socketOptions?: SeqpacketSocketOptions;
}

export interface SeqpacketServerEvents {
  connection: [socket: SeqpacketSocket];
  error: [err: NativeError];
  close: [];
}

export class SeqpacketServer extends EventEmitter<SeqpacketServerEvents> {
  readonly path: string;
  private handle: NativeSeqpacketServer | undefined;

  private constructor(handle: NativeSeqpacketServer, path: string, socketOptions: SeqpacketSocketOptions) {
    super();
    this.handle = handle;
    this.path = path;
    handle.start(
      (fds) => {
        for (const fd of fds) {
          if (!this.handle) {
            native().closeFd(fd);
            continue;
          }
          let socket: SeqpacketSocket;
          try {
            socket = SeqpacketSocket.fromFd(fd, socketOptions);
          } catch (err) {
            this.emit('error', err as NativeError);
            continue;
          }
          this.emit('connection', socket);
        }
      },
      (err) => this.emit('error', err),
    );
    handle.setEvents(true);
  }

  /**
   * Binds and listens on a path or a '\0abstract' name. A socket file nobody listens on
   * any more (left by a process that crashed) is removed and reused; a live one, or a path
   * that is not a socket, is refused (OXY_ERR_LISTEN_IN_USE).
   */
  static listen(path: string, options: SeqpacketServerOptions = {}): SeqpacketServer {
    const addon = native();
    let fd: number;
    try {
      fd = addon.seqpacketListen(path, options.backlog ?? 128);
    } catch (err) {
      if ((err as NativeError).code !== 'EADDRINUSE' || path.startsWith('\0')) throw err;
      removeStaleSocket(path);
      fd = addon.seqpacketListen(path, options.backlog ?? 128);
    }
    let handle: NativeSeqpacketServer;
    try {
      handle = new addon.SeqpacketServer(fd);
    } catch (err) {
      addon.closeFd(fd);
      throw err;
    }
    return new SeqpacketServer(handle, path, options.socketOptions ?? {});
  }

  get fd(): number {
    return this.handle?.fd ?? -1;
  }

  ref(): this {
    this.handle?.ref();
    return this;
  }

  unref(): this {
    this.handle?.unref();
    return this;
  }

  /** Stops listening and removes the socket file (abstract names vanish by themselves). */
  close(): void {
    const handle = this.handle;
    if (!handle) return;
    this.handle = undefined;
    handle.close();
    if (!this.path.startsWith('\0')) {
      try {
        unlinkSync(this.path);
      } catch {
        // Already removed by someone else: nothing to clean.
      }
    }
    this.emit('close');
  }
}

/** Connects to a listening path and returns the bare fd (for a PacketRelay); the caller owns it. */
export function seqpacketConnectFd(path: string): number {
  return native().seqpacketConnect(path);
}

/** Unlinks a socket file no process listens on (connecting is refused); throws if it is live or not a socket. */
function removeStaleSocket(path: string): void {
  if (!lstatSync(path).isSocket()) {
    throw new OxyError('OXY_ERR_LISTEN_IN_USE', `${path} exists and is not a socket: remove it or choose another path`);
  }
  let fd: number;
  try {
    fd = native().seqpacketConnect(path);
  } catch (err) {
    // ECONNREFUSED: nobody listens there any more. Anything else (EPROTOTYPE: a live socket of another type, EACCES) stays.
    if ((err as NativeError).code !== 'ECONNREFUSED') {
      throw new OxyError('OXY_ERR_LISTEN_IN_USE', `${path} is in use (${(err as Error).message}): choose another path`, { cause: err });
    }
    unlinkSync(path);
    return;
  }
  native().closeFd(fd);
  throw new OxyError('OXY_ERR_LISTEN_IN_USE', `Another process is listening on ${path} (is an edge already running?): stop it or choose another path`);
}

function closeAll(fds: readonly number[]): void {
  const addon = native();
  for (const fd of fds) {
    try {
      addon.closeFd(fd);
    } catch {
      // Closing is best effort; EBADF means it is gone already.
    }
  }
}
