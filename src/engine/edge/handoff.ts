/**
 * The public HTTP listener of a worker (`edge run --workers N`): a tunnel's connections live in
 * the workers the kernel hashed its connector's connections to, while a client's connection
 * lands on any worker. The front reads a new connection's first request head — only the target
 * and Host, what routing needs — and when its tunnel has no connection in this worker but one in
 * a sibling, hands the whole client connection (its fd, with the bytes already read) to that
 * sibling through the primary. The sibling serves it as if it had accepted it: no hop per
 * request, no copy after the hand-off. A handed-in connection is never handed on (no loop);
 * anything else (a head split over reads, a tunnel held by no sibling, later requests on a
 * kept-alive connection) is served here, as by a single edge.
 */
import { createServer, type Server as TcpServer, type Socket } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SendHandle } from 'node:child_process';
import { splitHostPort } from '../../core/address.js';
import { listenOn } from '../native/reuseport.js';
import type { Logger } from '../observe/log.js';

/** The worker's side of the primary's channel, as the front needs it (workers.ts WorkerLink). */
export interface Siblings {
  /** A sibling worker holding a connection of the tunnel; undefined when only this one, or none, does. */
  holder(tunnelId: string): number | undefined;
  /** Gives the connection (its handle, and the bytes already read from it) to worker `to`. */
  handOff(to: number, handle: RawHandle, head: Buffer): void;
  /** Where the connections siblings hand to this worker go. */
  onAdopt(fn: (socket: Socket, head: Buffer) => void): void;
  /** Tells the siblings which tunnels this worker holds connections of now. */
  held(tunnelIds: Iterable<string>): void;
  /**
   * The private peer-link address of a sibling worker by its edge id (forwarding.ts dials it for
   * what the hand-off does not cover: CONNECT, hooks, IP flows); `null` for an unknown edge at the
   * address the workers share (a sibling not announced yet, or gone); undefined: not a sibling.
   */
  peerAddress(edgeId: string, tunnelAddress: string): string | null | undefined;
  /**
   * The sibling workers holding a connection of the tunnel, as the primary told a moment ago:
   * forwarding reaches a tunnel that registered on a sibling before the store view shows it.
   */
  siblingHolders(tunnelId: string): { edgeId: string; tunnelAddress: string }[];
  /** Whether a sibling worker (by edge id) holds any tunnel now. */
  siblingHoldsAnything(edgeId: string): boolean;
}

export interface HandoffFrontOptions {
  http: HttpServer;
  siblings: Siblings;
  /** The tunnel that serves a hostname (the on-ramp's own rule), and whether this worker holds a connection of it. */
  tunnelFor(host: string): string | undefined;
  holdsHere(tunnelId: string): boolean;
  /** How long a new connection may take to send its first bytes (the headers timeout). */
  headersMs: number;
  log: Logger;
  onHandOff?: () => void;
}

/** Longest first read that is looked at; a longer head is served here. */
const MAX_HEAD = 16 * 1024;

export class HandoffFront {
  readonly #tcp: TcpServer;
  /** Accepted, first bytes not read yet. */
  readonly #waiting = new Set<Socket>();

  constructor(private readonly o: HandoffFrontOptions) {
    this.#tcp = createServer({ pauseOnConnect: true }, (socket) => this.#first(socket));
    o.siblings.onAdopt((socket, head) => this.adopt(socket, head));
  }

  async listen(hostPort: string, reusePort: boolean): Promise<void> {
    const { host, port } = splitHostPort(hostPort);
    await listenOn(this.#tcp, host, port, { reusePort });
    this.#tcp.on('error', (err) => this.o.log.error({ err }, 'Public HTTP listener error'));
    // Node starts enforcing headersTimeout/requestTimeout on 'listening'; the HTTP server never listens itself.
    this.o.http.emit('listening');
  }

  get address(): AddressInfo {
    return this.#tcp.address() as AddressInfo;
  }

  close(): Promise<void> {
    for (const s of this.#waiting) s.destroy();
    return new Promise((resolve) => this.#tcp.close(() => resolve()));
  }

  /** A connection a sibling handed over: served here, whatever it asks for. */
  adopt(socket: Socket, head: Buffer): void {
    if (head.length) socket.unshift(head);
    this.o.http.emit('connection', socket);
    // Paused while its head was read here: a 'data' listener does not restart a paused stream.
    socket.resume();
  }

  #first(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    socket.setTimeout(this.o.headersMs, () => socket.destroy());
    this.#waiting.add(socket);
    socket.once('close', () => this.#waiting.delete(socket));
    socket.once('data', (chunk: Buffer) => {
      this.#waiting.delete(socket);
      socket.pause();
      socket.setTimeout(0);
      const to = chunk.length <= MAX_HEAD ? this.#sibling(chunk) : undefined;
      if (to === undefined) return this.adopt(socket, chunk);
      const rest: Buffer[] = [chunk];
      const handle = detach(socket, rest);
      if (!handle) return this.adopt(socket, Buffer.concat(rest));
      this.o.onHandOff?.();
      this.o.siblings.handOff(to, handle, Buffer.concat(rest));
    });
    socket.resume();
  }

  /** The sibling to hand this connection to, from its first request head; undefined: serve it here. */
  #sibling(chunk: Buffer): number | undefined {
    const end = chunk.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const host = routingHost(chunk.toString('latin1', 0, end));
    const tunnelId = host === undefined ? undefined : this.o.tunnelFor(host);
    if (!tunnelId || this.o.holdsHere(tunnelId)) return undefined;
    return this.o.siblings.holder(tunnelId);
  }
}

/** A socket's libuv handle (what `process.send` passes as an fd). */
export interface RawHandle {
  readStop(): number;
  close(): void;
  onread?: unknown;
}

/**
 * Takes the libuv handle out of an accepted socket, to pass it as a raw handle: no read may land
 * between the bytes taken (appended to `read`) and the fd leaving, and the socket is destroyed
 * without closing the fd, so the server's connection count drops at once. Passing the net.Socket
 * itself would tie the server's close() to the receiving process acknowledging the socket's end
 * (Node's handle-passing bookkeeping), which a relay through the primary never sends.
 * The handle leaves the socket before its buffered bytes are taken: `socket.read()` on a socket
 * that still has it starts reading again (net.Socket#_read), and a handle reading in the sender
 * after the hand-off swallowed the bytes the receiver was owed (TLS records: bad record mac).
 * The sender closes the handle once sent (`sendHandle`).
 * Internal API (net.Socket has no public readStop or detach): undefined when it is not there.
 */
export function detach(socket: Socket, read: Buffer[]): RawHandle | undefined {
  const s = socket as unknown as { _handle?: RawHandle | null };
  const handle = s._handle;
  if (!handle || typeof handle.readStop !== 'function') return undefined;
  handle.readStop();
  handle.onread = () => undefined;
  s._handle = null;
  for (let more = socket.read() as Buffer | null; more; more = socket.read() as Buffer | null) read.push(more);
  socket.destroy();
  return handle;
}

/**
 * Sends a raw handle over an IPC channel and closes this process's copy once the message is
 * written (the fd travels with it, SCM_RIGHTS): Node closes a passed net.Socket itself, never a
 * raw handle, so each hand-off left an fd open in the sender, and with it the connection.
 */
export function sendHandle(send: (handle: SendHandle, done: () => void) => void, handle: RawHandle): void {
  send(handle as unknown as SendHandle, () => handle.close());
}

/** The authority a request head is routed by: an absolute-form target's (RFC 9112 §3.2.2), else Host (the view normalizes it). */
export function routingHost(head: string): string | undefined {
  const lineEnd = head.indexOf('\r\n');
  const target = head.slice(0, lineEnd < 0 ? undefined : lineEnd).split(' ')[1] ?? '';
  if (/^https?:\/\//i.test(target)) return target.slice(target.indexOf('//') + 2).split(/[/?#]/)[0];
  return /\r\nhost:[ \t]*([^\r\n]*)/i.exec(head)?.[1]?.trim() || undefined;
}
