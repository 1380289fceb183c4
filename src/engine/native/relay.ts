/**
 * A TUN relayed to a connected SEQPACKET socket in the addon (cpp/relay.cc): each packet
 * the TUN gives becomes one message and each IP message is written to the TUN, with no JS
 * per packet. Messages that are not IP packets (first byte not a version nibble 4 or 6)
 * come out as 'message'. When one side is full the relay stops reading the other
 * (backpressure, nothing dropped in user space).
 */
import { EventEmitter } from 'node:events';

import { native, type NativePacketRelay } from './binding.js';
import { closedError, type NativeError } from './errors.js';
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
}

export class PacketRelay extends EventEmitter<PacketRelayEvents> {
  private handle: NativePacketRelay | undefined;

  private constructor(handle: NativePacketRelay) {
    super();
    this.handle = handle;
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
    });
    return new PacketRelay(handle);
  }

  /** Sends a message of our own (not a packet). False when the socket is full. */
  send(data: Uint8Array): boolean {
    if (!this.handle) throw closedError('PacketRelay');
    return this.handle.send(data);
  }

  get stats(): { packetsOut: number; packetsIn: number; tunRefused: number } {
    return this.handle?.stats() ?? { packetsOut: 0, packetsIn: 0, tunRefused: 0 };
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
