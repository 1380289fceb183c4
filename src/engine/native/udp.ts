/**
 * UDP with IP_PKTINFO: every received datagram says which local address it was
 * sent to, and every sent datagram can say which local address it leaves from.
 * A server bound to the wildcard can so answer from the address the client
 * dialed, which Node's dgram cannot do (the kernel picks the route's source).
 */
import { isIP } from 'node:net';

import { formatAddress } from '../../core/address.js';
import { native, type NativeUdpSocket } from './binding.js';
import { closedError, type NativeError } from './errors.js';
import { SendQueue } from './send-queue.js';
import { QueuedEndpoint } from './endpoint.js';

// Record layout of UdpBatch.meta, as written by cpp/udp.cc (little-endian).
export const UDP_RECORD_SIZE = 56;
const OFF_DATA = 0;
const OFF_LENGTH = 4;
const OFF_IFINDEX = 8;
const OFF_SRC_PORT = 12;
const OFF_SRC_FAMILY = 14;
const OFF_DST_FAMILY = 15;
const OFF_SRC_ADDR = 16;
const OFF_DST_ADDR = 32;
const OFF_FLAGS = 48;
const OFF_SRC_SCOPE = 52;
const FLAG_TRUNCATED = 1;

export interface ReceivedDatagram {
  data: Buffer;
  sourceAddress: string;
  sourcePort: number;
  /** Local address the datagram was sent to (IP_PKTINFO); undefined if the kernel gave none. */
  destinationAddress: string | undefined;
  ifIndex: number;
  truncated: boolean;
}

/**
 * The datagrams of one wake-up (one or more recvmmsg calls): all payloads back to back in `data`, and
 * `count` fixed-size records in `meta` (offset, length, addresses as raw bytes).
 * Accessors read the records on demand, so nothing is allocated per datagram
 * unless asked for: `payload(i)` is a view into `data`, address strings are made
 * only when read. Both buffers are fresh per batch and may be kept.
 */
export class UdpBatch {
  constructor(
    readonly data: Buffer,
    readonly meta: Buffer,
    readonly count: number,
  ) {}

  payload(i: number): Buffer {
    const base = i * UDP_RECORD_SIZE;
    const offset = this.meta.readUInt32LE(base + OFF_DATA);
    return this.data.subarray(offset, offset + this.meta.readUInt32LE(base + OFF_LENGTH));
  }

  length(i: number): number {
    return this.meta.readUInt32LE(i * UDP_RECORD_SIZE + OFF_LENGTH);
  }

  sourceFamily(i: number): 4 | 6 {
    return this.meta[i * UDP_RECORD_SIZE + OFF_SRC_FAMILY] as 4 | 6;
  }

  /** IPv4-mapped sources on a dual-stack socket are given as plain IPv4. */
  sourceAddress(i: number): string {
    const base = i * UDP_RECORD_SIZE;
    const text = formatAddress(this.meta, base + OFF_SRC_ADDR, this.sourceFamily(i) === 4 ? 4 : 16);
    const scope = this.meta.readUInt32LE(base + OFF_SRC_SCOPE);
    return scope === 0 ? text : `${text}%${scope}`;
  }

  sourcePort(i: number): number {
    return this.meta.readUInt16LE(i * UDP_RECORD_SIZE + OFF_SRC_PORT);
  }

  destinationFamily(i: number): 4 | 6 | undefined {
    const family = this.meta[i * UDP_RECORD_SIZE + OFF_DST_FAMILY];
    return family === 4 || family === 6 ? family : undefined;
  }

  destinationAddress(i: number): string | undefined {
    const family = this.destinationFamily(i);
    return family === undefined ? undefined : formatAddress(this.meta, i * UDP_RECORD_SIZE + OFF_DST_ADDR, family === 4 ? 4 : 16);
  }

  /** Raw 4- or 16-byte views, for callers that key maps on bytes instead of strings. */
  sourceAddressBytes(i: number): Buffer {
    const base = i * UDP_RECORD_SIZE + OFF_SRC_ADDR;
    return this.meta.subarray(base, base + (this.sourceFamily(i) === 4 ? 4 : 16));
  }

  destinationAddressBytes(i: number): Buffer | undefined {
    const family = this.destinationFamily(i);
    const base = i * UDP_RECORD_SIZE + OFF_DST_ADDR;
    return family === undefined ? undefined : this.meta.subarray(base, base + (family === 4 ? 4 : 16));
  }

  ifIndex(i: number): number {
    return this.meta.readUInt32LE(i * UDP_RECORD_SIZE + OFF_IFINDEX);
  }

  /** The datagram was longer than maxDatagramSize; payload(i) holds its start only. */
  truncated(i: number): boolean {
    return (this.meta.readUInt32LE(i * UDP_RECORD_SIZE + OFF_FLAGS) & FLAG_TRUNCATED) !== 0;
  }

  /** Convenience view with one object per datagram (allocates; the accessors do not). */
  datagram(i: number): ReceivedDatagram {
    return {
      data: this.payload(i),
      sourceAddress: this.sourceAddress(i),
      sourcePort: this.sourcePort(i),
      destinationAddress: this.destinationAddress(i),
      ifIndex: this.ifIndex(i),
      truncated: this.truncated(i),
    };
  }

  *[Symbol.iterator](): IterableIterator<ReceivedDatagram> {
    for (let i = 0; i < this.count; i++) yield this.datagram(i);
  }
}

export interface OutgoingDatagram {
  data: Uint8Array;
  address: string;
  port: number;
  /** Local address to send from (IP_PKTINFO ipi_spec_dst / IPV6_PKTINFO ipi6_addr). */
  sourceAddress?: string;
  /**
   * UDP GSO (UDP_SEGMENT): `data` holds several datagrams of this many bytes (the last may
   * be shorter), sent in one go to the same destination. At most 64 segments and 64 KiB;
   * the kernel refuses more (EINVAL) and devices without checksum offload (EIO).
   */
  segmentSize?: number;
}

export interface PktinfoUdpSocketOptions {
  /** Local address; '::' (default) is dual-stack unless ipv6Only, '0.0.0.0' is IPv4 only. */
  address?: string;
  /** 0 (default) lets the kernel choose; read it back with address(). */
  port?: number;
  ipv6Only?: boolean;
  reuseAddress?: boolean;
  reusePort?: boolean;
  /** SO_RCVBUF / SO_SNDBUF in bytes (above net.core.*mem_max needs CAP_NET_ADMIN). */
  recvBufferSize?: number;
  sendBufferSize?: number;
  /** Datagrams per recvmmsg call. Default 64. */
  batchSize?: number;
  /**
   * recvmmsg calls per wake-up while the queue stays full; their datagrams form one
   * 'batch' event (so up to batchSize × this many). Default 4.
   */
  maxReadsPerWakeup?: number;
  /** Receive slot size; longer datagrams are truncated and flagged. Default 2048. */
  maxDatagramSize?: number;
  /** Datagrams kept while the send buffer is full; more are dropped and counted. Default 4096. */
  maxQueuedDatagrams?: number;
  /**
   * A raw socket of this IP protocol instead of UDP (1 = ICMP, 58 = ICMPv6; needs
   * CAP_NET_RAW). IPv4 raw sockets receive the IP header too; ports are meaningless (use 0).
   */
  rawProtocol?: number;
}

export interface PktinfoUdpSocketEvents {
  batch: [batch: UdpBatch];
  error: [err: NativeError];
  close: [];
}

export class PktinfoUdpSocket extends QueuedEndpoint<PktinfoUdpSocketEvents, NativeUdpSocket, OutgoingDatagram> {
  readonly family: 4 | 6;
  private readonly sendFrom = (items: readonly OutgoingDatagram[], start: number) => this.open().sendBatch(items, start);
  private readonly reportError = (err: NativeError) => this.emit('error', err);

  private constructor(handle: NativeUdpSocket, family: 4 | 6, maxQueued: number) {
    super(handle, new SendQueue(maxQueued, (d) => ({ ...d, data: Buffer.from(d.data) })));
    this.family = family;
  }

  /**
   * Creates and binds a socket, synchronously, in the calling thread's network
   * namespace (so it can be called inside withNetns), and starts reading.
   */
  static bind(options: PktinfoUdpSocketOptions = {}): PktinfoUdpSocket {
    const address = options.address ?? '::';
    const family = isIP(address.split('%')[0]!) === 4 ? 4 : 6;
    const handle = new (native().UdpSocket)(family, nativeOptions(options));
    return PktinfoUdpSocket.setUp(handle, options, () => handle.bind(address, options.port ?? 0));
  }

  /**
   * Adopts a UDP socket fd, bound or not (e.g. made by a process inside another
   * namespace and received over SCM_RIGHTS), and enables pktinfo on it. Takes
   * ownership: the fd is closed on close() and on refusal (ENOTSOCK if not UDP).
   * `address`, `port` and `ipv6Only` are ignored; the socket keeps its own.
   */
  static fromFd(fd: number, options: PktinfoUdpSocketOptions = {}): PktinfoUdpSocket {
    const handle = new (native().UdpSocket)(4, { ...nativeOptions(options), fd });
    return PktinfoUdpSocket.setUp(handle, options, () => {});
  }

  private static setUp(handle: NativeUdpSocket, options: PktinfoUdpSocketOptions, bind: () => void): PktinfoUdpSocket {
    try {
      if (options.recvBufferSize !== undefined || options.sendBufferSize !== undefined) {
        handle.setBufferSizes(options.recvBufferSize, options.sendBufferSize);
      }
      bind();
    } catch (err) {
      handle.close();
      throw err;
    }
    const socket = new PktinfoUdpSocket(handle, handle.family, options.maxQueuedDatagrams ?? 4096);
    handle.start(
      (data, meta, count) => socket.emit('batch', new UdpBatch(data, meta, count)),
      () => socket.flushQueue(),
      socket.reportError,
    );
    socket.updateEvents();
    return socket;
  }

  get fd(): number {
    return this.handle?.fd ?? -1;
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  address(): { family: 4 | 6; address: string; port: number } {
    return this.open().address();
  }

  /**
   * Sends one datagram, from `sourceAddress` if given. Returns true when the
   * kernel took it, false when it was queued (send buffer full) or dropped
   * (queue full). Throws a NativeError when the kernel refuses it.
   */
  send(data: Uint8Array, port: number, address: string, sourceAddress?: string): boolean {
    return this.sendBatch([{ data, port, address, sourceAddress }]) === 1;
  }

  /**
   * Sends datagrams in order with sendmmsg (64 per system call). Returns how many
   * the kernel took now; the rest wait in the queue until the socket is writable.
   * A datagram the kernel refuses (EADDRNOTAVAIL for a source that is not local,
   * ENETUNREACH, …) throws a NativeError whose `index` names it: datagrams before
   * it were sent, it and the ones after were not.
   */
  sendBatch(datagrams: readonly OutgoingDatagram[]): number {
    const handle = this.open();
    if (this.queue.length > 0) {
      this.queue.pushFrom(datagrams, 0);
      return 0;
    }
    const sent = handle.sendBatch(datagrams, 0);
    if (sent < datagrams.length) {
      this.queue.pushFrom(datagrams, sent);
      this.updateEvents();
    }
    return sent;
  }

  /** Datagrams waiting for room in the send buffer. */
  get queuedDatagrams(): number {
    return this.queue.length;
  }

  /** Datagrams dropped because the send queue was full. */
  get droppedDatagrams(): number {
    return this.queue.dropped;
  }

  setRecvBufferSize(bytes: number): void {
    this.open().setBufferSizes(bytes, undefined);
  }

  setSendBufferSize(bytes: number): void {
    this.open().setBufferSizes(undefined, bytes);
  }

  /** As the kernel reports it (twice the requested size, for its bookkeeping). */
  getRecvBufferSize(): number {
    return this.open().getBufferSizes()[0];
  }

  getSendBufferSize(): number {
    return this.open().getBufferSizes()[1];
  }

  private open(): NativeUdpSocket {
    if (!this.handle) throw closedError('PktinfoUdpSocket');
    return this.handle;
  }

  private flushQueue(): void {
    if (!this.handle) return;
    this.queue.flush(this.sendFrom, this.reportError);
    this.updateEvents();
  }
}

function nativeOptions(options: PktinfoUdpSocketOptions) {
  return {
    ipv6Only: options.ipv6Only ?? false,
    reuseAddress: options.reuseAddress ?? false,
    reusePort: options.reusePort ?? false,
    batchSize: options.batchSize ?? 64,
    maxDatagramSize: options.maxDatagramSize ?? 2048,
    maxReadsPerWakeup: options.maxReadsPerWakeup ?? 4,
    ...(options.rawProtocol === undefined ? {} : { rawProtocol: options.rawProtocol }),
  };
}
