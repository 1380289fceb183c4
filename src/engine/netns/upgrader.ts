/**
 * TCP upgrade: IP packets of TCP flows → NAT → a TUN in the unnamed namespace → the
 * kernel's TCP stack → one ordinary connected `net.Socket` per flow, accepted on a
 * listener bound (synchronously, from the main thread inside the namespace) to the
 * wildcard address there.
 *
 * NAT, per flow: client src:sport → slot address:port (from the pool, routed to the
 * TUN), dst:dport → the listener's address:port. The accepted socket's remote
 * address:port is the slot, which maps it back to its flow. Packets the kernel writes
 * to the TUN (dst = slot) are un-NATed (src ← dst:dport, dst ← src:sport) and handed
 * to `onReturn`.
 *
 * Namespace layout (defaults; only inside the unnamed namespace):
 *   oxup0  198.18.0.1/32, 2001:db8:ff::1/128            listener at [::]:PORT
 *   route  198.19.0.0/16, 2001:db8:ff:1::/64 dev oxup0  NAT slot addresses (clients)
 *
 * Throughput: the TUN has a jumbo MTU (65000) and no segmentation offloads: the kernel
 * segments to each client's MSS itself (its checksums it may leave partial: TUN_F_CSUM, summed by
 * the addon for any client that does not take them so), so a client whose link allows big
 * packets gets ~64 KB segments (what TSO would give) while one with MSS 1460 gets ordinary
 * packets — no segmentation in JS. Its IFF_VNET_HDR stays inside the addon (JS sees bare
 * packets): the fast path writes its TCP packets as CHECKSUM_PARTIAL, which the namespace's TCP
 * takes without summing them (partialChecksums). Reads and writes are batched (one N-API call
 * per batch), txqueuelen 5000.
 *
 * Flows whose client is a SEQPACKET socket go on the native fast path from their SYN
 * (`goFast`, native/fast-nat.ts): their packets are NATed between that socket and the TUN in
 * the read batches, with no JS turn per packet; JS keeps the client's SYN, every RST and
 * everything unusual (and every FIN with OXY_IP_NATIVE_FINS=0; else the FINs' marks come with
 * syncFast).
 */
import net from 'node:net';

import { NatPool } from '../flow/nat.js';
import type { Flow } from '../flow/flow.js';
import { parseAddress, parsePacket, rewriteDestination, rewriteSource, PacketView, TransportKind } from '../packet/index.js';
import { AcceptedTcp, FastNat, Tun, TcpAcceptor, dupFd, nativeAcceptAvailable, type FastNatCounters, type PacketBatch } from '../native/index.js';
import type { UnnamedNetns } from './namespace.js';
import { soon } from '../util/soon.js';

export interface TunLinkOptions {
  /** Interface name inside the namespace. */
  name?: string;
  /** Default 65000 (see the module comment). */
  mtu?: number;
  /** Default 5000 (the default 500 drops under load). */
  txQueueLength?: number;
  /** Most packets per read batch. Default 128. */
  batchSize?: number;
  /**
   * The fast path writes its TCP packets as CHECKSUM_PARTIAL (the TUN's IFF_VNET_HDR, kept in the
   * addon), so the namespace's TCP does not sum each one in software. Default true;
   * OXY_IP_PARTIAL_CSUM=0: a TUN without IFF_VNET_HDR, every checksum verified (A/B runs).
   */
  partialChecksums?: boolean;
}

export interface UpgraderOptions extends TunLinkOptions {
  /** Cap on NAT slots per address family (tests use a few to reach exhaustion). Default: the pool's size. */
  maxSlots?: number;
  /** Addresses in the IPv4 slot pool (from 198.19.0.1). Default 16 (16 × 64512 slots). */
  poolAddresses?: number;
  backlog?: number;
  /** Flows on the native fast path at once (more stay on the JS path). Default 16,384. */
  fastFlows?: number;
  /**
   * The kernel's SYN-ACK and the ACKs after a FIN take the fast path too. Default true;
   * OXY_IP_FAST_CLOSE=0 turns it off (see native/fast-nat.ts).
   */
  fastClose?: boolean;
  /**
   * With fastClose, the FINs too (JS learns of them at syncFast). Default true;
   * OXY_IP_NATIVE_FINS=0: JS sees every FIN (see native/fast-nat.ts).
   */
  nativeFins?: boolean;
  /**
   * The listener is accepted by the addon (native/accept.ts: no net.Socket per connection unless
   * onAccepted asks for one). Default true; OXY_IP_NATIVE_ACCEPT=0 turns it off (A/B runs).
   */
  nativeAccept?: boolean;
}

export interface UpgraderStats {
  /** Packets written to / read from the TUN. */
  toKernel: number;
  fromKernel: number;
  /** Packets read from the TUN that belong to no slot (late retransmits, kernel chatter). */
  unmatched: number;
  /** Accepted sockets with no flow (the flow ended first). */
  orphanSockets: number;
  /** Packets the TUN write queue dropped. */
  tunDropped: number;
  /** Packets the kernel refused to take from the TUN (EINVAL: not a packet it accepts). */
  tunRefused: number;
}

/**
 * Writes a batch; a packet the kernel refuses (the error carries its index) is counted
 * and skipped, and the rest still go out.
 */
export function writeAll(tun: Tun, packets: Buffer[], stats: { tunRefused: number }): void {
  let start = 0;
  while (start < packets.length) {
    try {
      tun.writeBatch(start === 0 ? packets : packets.slice(start));
      return;
    } catch (err) {
      const index = (err as { index?: number }).index;
      stats.tunRefused++;
      if (typeof index !== 'number' || tun.closed) return;
      start += index + 1;
    }
  }
}

const NATIVE_ACCEPT = process.env.OXY_IP_NATIVE_ACCEPT !== '0';
const PARTIAL_CSUM = process.env.OXY_IP_PARTIAL_CSUM !== '0';

/** The fd under a listening net.Server (Node's internal handle). */
function serverFd(server: net.Server): number | undefined {
  const fd = (server as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

const V4_LISTEN = '198.18.0.1';
const V6_LISTEN = '2001:db8:ff::1';
const V4_POOL = '198.19.0.1';
const V6_POOL = '2001:db8:ff:1::1';

/** What a native SYN's flow takes (TcpUpgrader.ticket): a fast-path flow id and an IPv4 NAT slot, reserved. */
export interface SynTicket {
  id: number;
  slot: number;
}

export class TcpUpgrader {
  readonly stats: UpgraderStats = { toKernel: 0, fromKernel: 0, unmatched: 0, orphanSockets: 0, tunDropped: 0, tunRefused: 0 };
  readonly pool4: NatPool;
  readonly pool6: NatPool;
  /** Upgraded flows' packets, NATed without JS (see goFast). */
  readonly fastNat: FastNat;
  private readonly counters: FastNatCounters = { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, lastSeen: 0, fins: 0, closedAt: 0 };
  /** First chunks of accepted connections read by the addon for QUIC pumps: at the accept, or at a later wake-up. */
  earlyReads(): { accept: number; wake: number } {
    return this.acceptor?.earlyReads() ?? { accept: 0, wake: 0 };
  }
  /** Un-NATed packets from the kernel, for the flow's client. The view is valid during the call only. */
  onReturn: (flow: Flow, view: PacketView) => void = () => {};
  /** An accepted socket and its flow. */
  onSocket: (flow: Flow, socket: net.Socket) => void = (_flow, socket) => socket.destroy();
  /** A connection the addon accepted (nativeAccept) and its flow. Default: as a socket to onSocket. */
  onAccepted: (flow: Flow, conn: AcceptedTcp) => void = (flow, conn) => this.onSocket(flow, conn.socket());
  /** The listener accepted by the addon (see native/accept.ts); undefined: by Node's net.Server. */
  private readonly acceptor: TcpAcceptor | undefined;

  private readonly flows4 = new Map<number, Flow>();
  private readonly flows6 = new Map<number, Flow>();
  private readonly listen4 = parseAddress(V4_LISTEN);
  private readonly listen6 = parseAddress(V6_LISTEN);
  private listenPort = 0;
  private readonly out: Buffer[] = [];
  private flushScheduled = false;
  private readonly view = new PacketView();
  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.out.length === 0) return;
    writeAll(this.tun, this.out.splice(0, this.out.length), this.stats);
    this.stats.tunDropped = this.tun.droppedPackets;
  };

  private constructor(
    readonly ns: UnnamedNetns,
    private readonly tun: Tun,
    private readonly server: net.Server,
    options: UpgraderOptions,
  ) {
    this.pool4 = new NatPool({ base: V4_POOL, addresses: options.poolAddresses ?? 16, maxSlots: options.maxSlots });
    this.pool6 = new NatPool({ base: V6_POOL, addresses: options.poolAddresses ?? 16, maxSlots: options.maxSlots });
    this.fastNat = new FastNat(options.fastFlows ?? 16384, options.fastClose, options.nativeFins);
    tun.useFastNat(this.fastNat);
    tun.on('packets', (batch) => this.fromTun(batch));
    tun.on('error', () => {});
    server.on('error', () => {});
    const fd = options.nativeAccept !== false && NATIVE_ACCEPT && nativeAcceptAvailable() ? serverFd(server) : undefined;
    if (fd === undefined) {
      server.on('connection', (socket) => this.accepted(socket));
      return;
    }
    // The addon accepts on a duplicate of the listener; Node's handle closes (the socket listens on).
    this.acceptor = new TcpAcceptor(dupFd(fd), {
      accepted: (conn, bytes, offset, length, port) => this.acceptedNative(conn, bytes, offset, length, port),
      error: () => {},
    });
    server.close();
  }

  /** Opens the TUN and the listener in `ns` and configures addresses and routes. */
  static async create(ns: UnnamedNetns, options: UpgraderOptions = {}): Promise<TcpUpgrader> {
    const name = options.name ?? 'oxup0';
    const tun = await ns.openTun({
      name,
      mtu: options.mtu ?? 65000,
      txQueueLength: options.txQueueLength ?? 5000,
      batchSize: options.batchSize ?? 128,
      partialChecksums: options.partialChecksums ?? PARTIAL_CSUM,
      // The kernel leaves what it writes here partially summed: a client whose relay writes it to
      // its TUN as CHECKSUM_PARTIAL gets it so (the addon sums it for anyone else).
      offload: { checksum: true },
    });
    let server: net.Server;
    try {
      server = await ns.listen(options.backlog ?? 4096);
    } catch (err) {
      tun.close();
      throw err;
    }
    const port = (server.address() as net.AddressInfo).port;
    const upgrader = new TcpUpgrader(ns, tun, server, options);
    upgrader.listenPort = port;
    try {
      await ns.ip([
        `link set ${name} addrgenmode none`,
        `addr add ${V4_LISTEN}/32 dev ${name}`,
        `addr add ${V6_LISTEN}/128 dev ${name} nodad`,
        `link set ${name} up`,
        `route add 198.19.0.0/16 dev ${name}`,
        `route add 2001:db8:ff:1::/64 dev ${name}`,
      ]);
    } catch (err) {
      upgrader.close();
      throw err;
    }
    return upgrader;
  }

  get port(): number {
    return this.listenPort;
  }

  /** Reserves a NAT slot for a TCP flow; false when the pool is exhausted. */
  attach(flow: Flow): boolean {
    const pool = flow.version === 4 ? this.pool4 : this.pool6;
    const slot = pool.allocate();
    if (slot < 0) return false;
    flow.slot = slot;
    (flow.version === 4 ? this.flows4 : this.flows6).set(slot, flow);
    return true;
  }

  /**
   * Moves an attached flow to the fast path: its packets from the SEQPACKET socket that joined
   * as `peer` (SeqpacketSocket.joinFastNat) and from the kernel are NATed natively from now on.
   * False when it cannot (no slot, already there, fast table full).
   */
  goFast(flow: Flow, peer: number): boolean {
    if (flow.slot < 0 || flow.fastId >= 0) return false;
    const v4 = flow.version === 4;
    const pool = v4 ? this.pool4 : this.pool6;
    // The addon copies the addresses: the slot's is written into scratch, not a Buffer per flow.
    const nat = v4 ? this.scratch4 : this.scratch6;
    pool.writeAddress(flow.slot, nat);
    const id = this.fastNat.add(
      peer,
      flow.src,
      flow.srcPort,
      flow.dst,
      flow.dstPort,
      nat,
      pool.port(flow.slot),
      v4 ? this.listen4 : this.listen6,
      this.listenPort,
    );
    if (id < 0) return false;
    flow.fastId = id;
    return true;
  }

  /**
   * Adds what the fast path counted for the flow since the last call to its counters and lastSeen,
   * and the FINs that passed there to its state (nativeFins): its close dates from when the
   * second FIN passed.
   */
  syncFast(flow: Flow): void {
    if (flow.fastId < 0) return;
    const c = this.fastNat.take(flow.fastId, this.counters);
    if (c.lastSeen === 0) return;
    flow.packetsIn += c.packetsIn;
    flow.bytesIn += c.bytesIn;
    flow.packetsOut += c.packetsOut;
    flow.bytesOut += c.bytesOut;
    if (c.lastSeen > flow.lastSeen) flow.lastSeen = c.lastSeen;
    if (c.fins === 0) return;
    if (c.fins & 1) flow.finIn = true;
    if (c.fins & 2) flow.finOut = true;
    if (flow.finIn && flow.finOut && flow.closingSince === 0) flow.closingSince = c.closedAt || flow.lastSeen;
  }

  /**
   * Reserves a fast-path flow id and an IPv4 NAT slot for the next native SYN of the client socket
   * `peer` (native/fast-nat.ts; IpEdge's nativeSyn) and hands them to the addon; undefined when
   * either is used up.
   */
  ticket(peer: number): SynTicket | undefined {
    const id = this.fastNat.reserve();
    if (id < 0) return undefined;
    const slot = this.pool4.allocate();
    if (slot < 0) {
      this.fastNat.unreserve(id);
      return undefined;
    }
    this.pool4.writeAddress(slot, this.scratch4);
    this.fastNat.handle.ticket(peer, id, this.scratch4, this.pool4.port(slot), this.listen4, this.listenPort);
    return { id, slot };
  }

  /** A ticket the addon never used (its peer's were dropped: fastNat.handle.dropTickets) given back. */
  unticket(ticket: SynTicket): void {
    this.pool4.release(ticket.slot);
    this.fastNat.unreserve(ticket.id);
  }

  /** A flow the addon registered at its SYN with `ticket`: attached and fast, as attach() and goFast() leave one. */
  adoptBorn(flow: Flow, ticket: SynTicket): void {
    flow.slot = ticket.slot;
    this.flows4.set(ticket.slot, flow);
    flow.fastId = ticket.id;
  }

  /** Returns the flow's slot (and takes it off the fast path, its counters brought up to date). */
  detach(flow: Flow): void {
    if (flow.fastId >= 0) {
      this.syncFast(flow);
      this.fastNat.remove(flow.fastId);
      flow.fastId = -1;
    }
    if (flow.slot < 0) return;
    const flows = flow.version === 4 ? this.flows4 : this.flows6;
    if (flows.get(flow.slot) === flow) {
      flows.delete(flow.slot);
      (flow.version === 4 ? this.pool4 : this.pool6).release(flow.slot);
    }
    flow.slot = -1;
  }

  /** NATs a client packet of an attached flow (in place) and queues it for the TUN. */
  toKernel(flow: Flow, view: PacketView): void {
    const pool = flow.version === 4 ? this.pool4 : this.pool6;
    const address = flow.version === 4 ? this.scratch4 : this.scratch6;
    pool.writeAddress(flow.slot, address);
    rewriteSource(view, address, pool.port(flow.slot));
    rewriteDestination(view, flow.version === 4 ? this.listen4 : this.listen6, this.listenPort);
    // A view of the packet exactly (link padding dropped).
    this.out.push(view.length === view.buf.length ? view.buf : view.buf.subarray(0, view.length));
    this.stats.toKernel++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Once per new flow's SYN here (the batch's other packets go natively).
      soon(this.flush);
    }
  }

  private readonly scratch4 = Buffer.alloc(4);
  private readonly remotes = new Map<string, Buffer>();
  private readonly scratch6 = Buffer.alloc(16);

  private fromTun(batch: PacketBatch): void {
    const view = this.view;
    for (let i = 0; i < batch.count; i++) {
      const parsed = parsePacket(batch.packet(i), view);
      if (!parsed.ok || view.transport !== TransportKind.Tcp) {
        this.stats.unmatched++;
        continue;
      }
      const v4 = view.version === 4;
      const pool = v4 ? this.pool4 : this.pool6;
      const slot = pool.slotOf(view.buf, view.dstOffset, view.dstPort);
      const flow = slot < 0 ? undefined : (v4 ? this.flows4 : this.flows6).get(slot);
      if (!flow) {
        this.stats.unmatched++;
        continue;
      }
      this.stats.fromKernel++;
      rewriteSource(view, flow.dst, flow.dstPort);
      rewriteDestination(view, flow.src, flow.srcPort);
      this.onReturn(flow, view);
    }
  }

  private acceptedNative(conn: AcceptedTcp, bytes: Uint8Array, offset: number, length: number, port: number): void {
    const v4 = length === 4;
    const slot = (v4 ? this.pool4 : this.pool6).slotOf(bytes, offset, port);
    const flow = slot < 0 ? undefined : (v4 ? this.flows4 : this.flows6).get(slot);
    if (!flow || flow.ended) {
      this.stats.orphanSockets++;
      conn.destroy();
      return;
    }
    this.onAccepted(flow, conn);
  }

  private accepted(socket: net.Socket): void {
    // A listener handed over from the namespace child has no server-level noDelay.
    socket.setNoDelay(true);
    let remote = socket.remoteAddress ?? '';
    if (remote.startsWith('::ffff:')) remote = remote.slice(7);
    let flow: Flow | undefined;
    try {
      // Remote addresses are the pools' few slot addresses: parsed once each, not per connection.
      let address = this.remotes.get(remote);
      if (!address) {
        address = parseAddress(remote);
        if (this.remotes.size < 1024) this.remotes.set(remote, address);
      }
      const v4 = address.length === 4;
      const slot = (v4 ? this.pool4 : this.pool6).slotOf(address, 0, socket.remotePort ?? 0);
      flow = slot < 0 ? undefined : (v4 ? this.flows4 : this.flows6).get(slot);
    } catch {
      flow = undefined;
    }
    if (!flow || flow.ended) {
      this.stats.orphanSockets++;
      socket.destroy();
      return;
    }
    this.onSocket(flow, socket);
  }

  get activeSlots(): number {
    return this.flows4.size + this.flows6.size;
  }

  close(): void {
    this.flush();
    this.server.close();
    this.acceptor?.close();
    this.tun.close();
    this.flows4.clear();
    this.flows6.clear();
  }
}
