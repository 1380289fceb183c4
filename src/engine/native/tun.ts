/**
 * TUN device (IFF_TUN | IFF_NO_PI): raw IP packets in and out, read and written
 * in batches. With `vnetHeader`, every packet read or written starts with a
 * 10-byte struct virtio_net_hdr, and offloads let the kernel hand over (and take)
 * 64 KiB TCP super-packets and leave checksums partial.
 *
 * The link is configured through ioctls on a control socket created with the
 * TUN (same namespace): setUp, setMtu, setTxQueueLength. Addresses and routes
 * are left to `ip` (or netlink) — they need no fast path.
 */

import { native, type NativeTunDevice } from './binding.js';
import { closedError, type NativeError } from './errors.js';
import { SendQueue } from './send-queue.js';
import { QueuedEndpoint } from './endpoint.js';
import type { FastNat } from './fast-nat.js';

export const VIRTIO_NET_HDR_SIZE = 10;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;

/** struct virtio_net_hdr (little-endian fields, as the kernel writes them for TUN). */
export interface VirtioNetHeader {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function readVirtioNetHeader(packet: Uint8Array): VirtioNetHeader {
  const view = new DataView(packet.buffer, packet.byteOffset, VIRTIO_NET_HDR_SIZE);
  return {
    flags: view.getUint8(0),
    gsoType: view.getUint8(1),
    hdrLen: view.getUint16(2, true),
    gsoSize: view.getUint16(4, true),
    csumStart: view.getUint16(6, true),
    csumOffset: view.getUint16(8, true),
  };
}

/** Writes a header into the first 10 bytes of `packet` (zeros mean "plain packet, checksums done"). */
export function writeVirtioNetHeader(packet: Uint8Array, header: Partial<VirtioNetHeader> = {}): void {
  const view = new DataView(packet.buffer, packet.byteOffset, VIRTIO_NET_HDR_SIZE);
  view.setUint8(0, header.flags ?? 0);
  view.setUint8(1, header.gsoType ?? VIRTIO_NET_HDR_GSO_NONE);
  view.setUint16(2, header.hdrLen ?? 0, true);
  view.setUint16(4, header.gsoSize ?? 0, true);
  view.setUint16(6, header.csumStart ?? 0, true);
  view.setUint16(8, header.csumOffset ?? 0, true);
}

/** Packets of one wake-up, back to back in `data`; packet i is data[offsets[i], offsets[i+1]). */
export class PacketBatch {
  constructor(
    readonly data: Buffer,
    readonly offsets: Uint32Array,
    readonly count: number,
  ) {}

  /** A view into `data` (no copy). */
  packet(i: number): Buffer {
    return this.data.subarray(this.offsets[i]!, this.offsets[i + 1]!);
  }

  *[Symbol.iterator](): IterableIterator<Buffer> {
    for (let i = 0; i < this.count; i++) yield this.packet(i);
  }
}

export interface TunOffload {
  /** TUN_F_CSUM: packets may carry partial checksums (required by the TSO flags). */
  checksum?: boolean;
  tso4?: boolean;
  tso6?: boolean;
  tsoEcn?: boolean;
}

export interface TunOptions {
  /** Interface name (max 15 chars); empty or absent: the kernel picks tunN. */
  name?: string;
  /** IFF_VNET_HDR: a virtio_net_hdr precedes every packet read and written. */
  vnetHeader?: boolean;
  /** TUNSETOFFLOAD flags; only with vnetHeader. Default with vnetHeader: checksum + tso4 + tso6. */
  offload?: TunOffload;
  /**
   * IFF_VNET_HDR kept inside the addon: JS reads and writes bare packets (no offloads), and a
   * fast NAT's TCP packets (useFastNat) are written as CHECKSUM_PARTIAL, so the namespace's TCP
   * does not sum them in software (fastnat.cc says why that is safe). Not with vnetHeader. On an
   * adopted fd it takes effect if the fd has IFF_VNET_HDR. With `offload: { checksum: true }` (no
   * other offload is taken) the kernel leaves the checksums of what it writes here partial too:
   * the addon completes them for JS and for fast-path clients that do not take them.
   */
  partialChecksums?: boolean;
  multiQueue?: boolean;
  /** Most packets per 'packets' event. Default 64. */
  batchSize?: number;
  /** Largest IP packet read (the virtio header comes on top). Default 65535. */
  maxPacketSize?: number;
  /** Applied at open through ioctls, in this order: mtu, txQueueLength, up. */
  mtu?: number;
  txQueueLength?: number;
  up?: boolean;
  /** Packets kept while the TUN will not take more (EAGAIN). Default 4096. */
  maxQueuedPackets?: number;
}

export interface TunEvents {
  packets: [batch: PacketBatch];
  error: [err: NativeError];
  close: [];
}

export class Tun extends QueuedEndpoint<TunEvents, NativeTunDevice, Uint8Array> {
  readonly name: string;
  readonly vnetHeader: boolean;
  private readonly writeFrom = (items: readonly Uint8Array[], start: number) => this.open().writeBatch(items, start);
  private readonly reportError = (err: NativeError) => this.emit('error', err);

  private constructor(handle: NativeTunDevice, vnetHeader: boolean, maxQueued: number) {
    super(handle, new SendQueue(maxQueued, (packet) => Buffer.from(packet)));
    this.name = handle.name;
    this.vnetHeader = vnetHeader;
  }

  /**
   * Creates the device in the calling thread's network namespace (call it inside
   * withNetns to put it elsewhere) and starts reading. The device disappears on close().
   */
  static open(options: TunOptions = {}): Tun {
    const vnetHeader = options.vnetHeader ?? false;
    const offload = options.offload ?? (vnetHeader ? { checksum: true, tso4: true, tso6: true } : {});
    const handle = new (native().TunDevice)({
      name: options.name ?? '',
      vnetHeader,
      partialChecksums: !vnetHeader && options.partialChecksums === true,
      offload: vnetHeader || options.partialChecksums ? offloadFlags(offload) : 0,
      multiQueue: options.multiQueue ?? false,
      batchSize: options.batchSize ?? 64,
      maxPacketSize: options.maxPacketSize ?? 65535,
    });
    return Tun.setUp(handle, options);
  }

  /**
   * Adopts an attached TUN fd (IFF_TUN|IFF_NO_PI), e.g. one a process inside
   * another namespace opened and sent over SCM_RIGHTS. Name and IFF_VNET_HDR come
   * from the fd; `offload` is applied only if given. Takes ownership (closed on
   * refusal too). Link ioctls (setUp, setMtu, …) act in the namespace that is
   * current when fromFd runs: configure a TUN that lives elsewhere from there.
   */
  static fromFd(fd: number, options: Omit<TunOptions, 'name' | 'vnetHeader' | 'multiQueue'> = {}): Tun {
    const handle = new (native().TunDevice)({
      fd,
      name: '',
      vnetHeader: false,
      partialChecksums: options.partialChecksums === true,
      offload: options.offload ? offloadFlags(options.offload) : 0,
      multiQueue: false,
      batchSize: options.batchSize ?? 64,
      maxPacketSize: options.maxPacketSize ?? 65535,
    });
    return Tun.setUp(handle, options);
  }

  private static setUp(handle: NativeTunDevice, options: TunOptions): Tun {
    try {
      if (options.mtu !== undefined) handle.setMtu(options.mtu);
      if (options.txQueueLength !== undefined) handle.setTxQueueLength(options.txQueueLength);
      if (options.up) handle.setUp(true);
    } catch (err) {
      handle.close();
      throw err;
    }
    const tun = new Tun(handle, handle.vnetHeader, options.maxQueuedPackets ?? 4096);
    handle.start(
      (data, offsets, count) => tun.emit('packets', new PacketBatch(data, offsets, count)),
      () => tun.flushQueue(),
      tun.reportError,
    );
    tun.updateEvents();
    return tun;
  }

  get fd(): number {
    return this.handle?.fd ?? -1;
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  get ifIndex(): number {
    return this.open().ifIndex;
  }

  setMtu(mtu: number): void {
    this.open().setMtu(mtu);
  }

  getMtu(): number {
    return this.open().getMtu();
  }

  /** SIOCSIFTXQLEN. The default 500 drops under load; 5000+ is a good start. */
  setTxQueueLength(length: number): void {
    this.open().setTxQueueLength(length);
  }

  setUp(up = true): void {
    this.open().setUp(up);
  }

  /** Writes one packet (with its virtio header when vnetHeader). Returns false if queued/dropped. */
  write(packet: Uint8Array): boolean {
    return this.writeBatch([packet]) === 1;
  }

  /**
   * Writes packets in order, one write() each, in one N-API call. Returns how
   * many the kernel took now; the rest are queued until the TUN is writable. A
   * packet the kernel refuses (EINVAL for a malformed one, EIO when the link is
   * down) throws a NativeError with its `index`; the packets after it were not written.
   */
  writeBatch(packets: readonly Uint8Array[]): number {
    const handle = this.open();
    if (this.queue.length > 0) {
      this.queue.pushFrom(packets, 0);
      return 0;
    }
    const written = handle.writeBatch(packets, 0);
    if (written < packets.length) {
      this.queue.pushFrom(packets, written);
      this.updateEvents();
    }
    return written;
  }

  /**
   * Lets `nat` pass its flows' packets read here to their clients, and write theirs here,
   * without JS (see fast-nat.ts). Not with vnetHeader (with partialChecksums it may).
   */
  useFastNat(nat: FastNat): void {
    this.open().setFastNat(nat.handle);
  }

  get queuedPackets(): number {
    return this.queue.length;
  }

  get droppedPackets(): number {
    return this.queue.dropped;
  }

  private open(): NativeTunDevice {
    if (!this.handle) throw closedError(`Tun ${this.name}`);
    return this.handle;
  }

  private flushQueue(): void {
    if (!this.handle) return;
    this.queue.flush(this.writeFrom, this.reportError);
    this.updateEvents();
  }
}

function offloadFlags(offload: TunOffload): number {
  const flags = native().TUN_F;
  return (offload.checksum ? flags.CSUM : 0) | (offload.tso4 ? flags.TSO4 : 0) | (offload.tso6 ? flags.TSO6 : 0) | (offload.tsoEcn ? flags.TSO_ECN : 0);
}
