/**
 * A TUN relayed to a connected SEQPACKET socket in the addon (cpp/relay.cc): each packet
 * the TUN gives becomes one message and each IP message is written to the TUN, with no JS
 * per packet. Messages that are not IP packets (first byte not a version nibble 4 or 6)
 * come out as 'message'. When one side is full the relay stops reading the other
 * (backpressure, nothing dropped in user space).
 *
 * The relay runs on the addon's packet-relay thread by default (`oxy-packets`, one per process, every
 * relay's fds in its epoll set): a wake-up is then the relays' work alone, not a turn of Node's
 * loop (`OXY_RELAY_THREAD=0` or `thread: false` keeps it on the loop).
 * The events come on the JS thread either way.
 */
import { EventEmitter } from 'node:events';

import { native, type NativePacketRelay } from './binding.js';
import { closedError, NativeError } from './errors.js';
import { dupFd } from './netns.js';
import type { Tun } from './tun.js';

export interface PacketRelayEvents {
  /** A message that is not an IP packet (e.g. the edge's refusal). */
  message: [data: Buffer];
  /** The peer closed the socket. */
  end: [];
  error: [err: NativeError];
  close: [];
}

export interface PacketRelayOptions {
  /** Largest packet relayed; default 65535. */
  maxPacketSize?: number;
  /** SO_SNDBUF of the socket (bytes the peer has not read yet); default 4 MiB, capped by net.core.wmem_max. */
  sendBufferSize?: number;
  /**
   * A message of our own sent before any packet (the edge reads the device's context first). A
   * `send()` after attach may follow packets: the relay's thread starts relaying at once.
   */
  first?: Uint8Array;
  /** Relay on the packet-relay thread (default) or on this thread's event loop; the default follows `OXY_RELAY_THREAD` (0: the loop). */
  thread?: boolean;
  /**
   * On the packet-relay thread, move packets with io_uring (one system call per wake-up) where the
   * kernel allows it, else with epoll and a call per batch; the default follows `OXY_RELAY_URING` (0: epoll).
   */
  ring?: boolean;
}

export interface PacketRelayStats {
  packetsOut: number;
  packetsIn: number;
  tunRefused: number;
  /** Whether the relay runs on the packet-relay thread. */
  thread: boolean;
  /** Whether it runs on that thread's io_uring (false where io_uring_setup was refused: ENOSYS, EPERM). */
  ring: boolean;
  /** Whether `sendPartial()` turned the TUN's checksum offload on. */
  partialSends: boolean;
}

export class PacketRelay extends EventEmitter<PacketRelayEvents> {
  private handle: NativePacketRelay | undefined;

  private constructor(handle: NativePacketRelay, first: Uint8Array | undefined) {
    super();
    this.handle = handle;
    try {
      if (first && !handle.send(first)) throw new NativeError('sendmsg', 11, 'EAGAIN', 'PacketRelay: its socket took no first message');
    } catch (err) {
      handle.close();
      throw err;
    }
    handle.start(
      (data) => this.emit('message', data),
      () => this.emit('end'),
      (err) => this.emit('error', err as NativeError),
    );
  }

  /**
   * Relays `tun` to a connected SEQPACKET socket, whose fd it takes (closed on refusal
   * too). The Tun stops reading (its own events stay quiet) and keeps the device and its
   * link ioctls; close both when done.
   */
  static attach(tun: Tun, socketFd: number, options: PacketRelayOptions = {}): PacketRelay {
    const addon = native();
    let tunFd: number;
    try {
      tunFd = dupFd(tun.fd);
    } catch (err) {
      addon.closeFd(socketFd);
      throw err;
    }
    tun.pause();
    const handle = new addon.PacketRelay(tunFd, socketFd, {
      maxPacketSize: options.maxPacketSize ?? 65535,
      sendBufferSize: options.sendBufferSize ?? 4 * 1024 * 1024,
      thread: options.thread ?? process.env.OXY_RELAY_THREAD !== '0',
      ring: options.ring ?? process.env.OXY_RELAY_URING !== '0',
    });
    return new PacketRelay(handle, options.first);
  }

  /** Sends a message of our own (not a packet; it may follow packets already relayed: see `first`). False when the socket is full. */
  send(data: Uint8Array): boolean {
    if (!this.handle) throw closedError('PacketRelay');
    return this.handle.send(data);
  }

  /**
   * Lets the TUN's kernel leave the checksums of what it sends partial (TUN_F_CSUM), once the peer
   * said it sums TCP checksums where it must (the edge's on-ramp answers a context that says
   * `partialSends`): the kernel then neither sums nor copies each TCP segment it sends. Plain TCP
   * packets go on partial; any other partial checksum the relay completes. False (nothing
   * changed) for a TUN without the addon's IFF_VNET_HDR (opened without partialChecksums).
   */
  sendPartial(): boolean {
    if (!this.handle) throw closedError('PacketRelay');
    return this.handle.sendPartial();
  }

  /**
   * Sends `message` with the TUN's fd (SCM_RIGHTS) to a peer that said it takes the TUN (the edge's
   * on-ramp answers a context that says `tunHandoff`). The relay goes on until `handOver()`.
   * False when the socket is full (nothing sent).
   */
  offerTun(message: Uint8Array): boolean {
    if (!this.handle) throw closedError('PacketRelay');
    return this.handle.offerTun(message);
  }

  /**
   * The peer took the TUN: the relay stops (without 'end' or 'close') and returns its socket's fd,
   * now the caller's (the control channel). The Tun stays the caller's as before.
   */
  handOver(): number {
    const handle = this.handle;
    if (!handle) throw closedError('PacketRelay');
    this.handle = undefined;
    return handle.handOver();
  }

  get stats(): PacketRelayStats {
    return this.handle?.stats() ?? { packetsOut: 0, packetsIn: 0, tunRefused: 0, thread: false, ring: false, partialSends: false };
  }

  get closed(): boolean {
    return this.handle === undefined;
  }

  close(): void {
    const handle = this.handle;
    if (!handle) return;
    this.handle = undefined;
    handle.close();
    this.emit('close');
  }
}
