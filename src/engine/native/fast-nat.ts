/**
 * The IP edge's fast path for established upgraded TCP flows (cpp/fastnat.cc): the SEQPACKET
 * sockets that joined it and the upgrade TUN it is attached to NAT and pass those flows'
 * packets in their read batches, without a JS turn, a Buffer or a parse in JS per packet.
 * Clients' SYNs, RSTs, fragments, IP options and anything unknown still reach JS, and a flow that
 * showed RST stays with JS from then on. With `fastClose` (default; OXY_IP_FAST_CLOSE=0 turns it
 * off, to compare) the kernel's SYN-ACK and the ACKs after a FIN pass natively; without it a flow
 * that showed FIN stays with JS, as before. With `nativeFins` too (default; OXY_IP_NATIVE_FINS=0:
 * JS sees every FIN, and the rest of the FIN's read batch follows it there so nothing overtakes
 * it) the FINs themselves pass natively and are marked in the flow's counters: the flow table
 * learns of them at its sweep, or sooner where it must (TcpUpgrader.syncFast): a JS turn less per
 * FIN, two per connection. Packets to a client whose socket has messages queued in JS wait behind
 * them (JS sends them, in order).
 *
 * Counters and the last-seen time of each registered flow accumulate in a Float64Array that
 * `take()` reads and zeroes, so the flow table's idle sweep and end-of-flow figures stay right.
 */
import { native, type NativeFastNat } from './binding.js';

const STRIDE = 7;

export interface FastNatCounters {
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  /** Wall-clock ms of the last packet either way; 0 when none passed since the last take(). */
  lastSeen: number;
  /** FINs passed natively so far: 1 the client's, 2 the kernel's (nativeFins). */
  fins: number;
  /** Wall-clock ms when the second of them passed; 0: not both. */
  closedAt: number;
}

/** The order of the addon's `totals()` array (fastnat.cc); FastNat.totals names each. */
const TOTALS = [
  'toKernel',
  'toClients',
  'lost',
  'refused',
  'sameTurnSockets',
  'sameTurnTun',
  'sameTurnTunCounted',
  'tunRingWrites',
  'tunRingEnters',
  'tunRingReads',
  'tunRingUpgradeReads',
] as const;
export type FastNatTotals = Record<(typeof TOTALS)[number], number>;

export class FastNat {
  /** @internal */
  readonly handle: NativeFastNat;
  private readonly stats: Float64Array;
  private readonly free: number[] = [];
  private next = 0;

  /** `capacity`: flows registered at once; more stay on the JS path. */
  constructor(
    readonly capacity = 65536,
    readonly fastClose = process.env.OXY_IP_FAST_CLOSE !== '0',
    nativeFins = process.env.OXY_IP_NATIVE_FINS !== '0',
  ) {
    this.nativeFins = fastClose && nativeFins;
    this.stats = new Float64Array(capacity * STRIDE);
    this.handle = new (native().FastNat)(this.stats, fastClose, this.nativeFins);
  }

  /** FINs pass natively (see the module comment). */
  readonly nativeFins: boolean;

  /**
   * Registers a flow of the client socket `peer` (SeqpacketSocket.joinFastNat): its packets
   * src:srcPort → dst:dstPort become nat:natPort → listen:listenPort and back. Returns the
   * flow's id, or -1 (table full, or the tuple already registered).
   */
  add(
    peer: number,
    src: Uint8Array,
    srcPort: number,
    dst: Uint8Array,
    dstPort: number,
    nat: Uint8Array,
    natPort: number,
    listen: Uint8Array,
    listenPort: number,
  ): number {
    const id = this.free.pop() ?? (this.next < this.capacity ? this.next++ : -1);
    if (id < 0) return -1;
    if (this.handle.add(id, peer, src, srcPort, dst, dstPort, nat, natPort, listen, listenPort)) return id;
    this.free.push(id);
    return -1;
  }

  /** What passed since the last take() (and zeroes it), and the FINs that passed so far. */
  take(id: number, into: FastNatCounters): FastNatCounters {
    const s = this.stats;
    const at = id * STRIDE;
    into.packetsIn = s[at]!;
    into.bytesIn = s[at + 1]!;
    into.packetsOut = s[at + 2]!;
    into.bytesOut = s[at + 3]!;
    into.lastSeen = s[at + 4]!;
    into.fins = s[at + 5]!;
    into.closedAt = s[at + 6]!;
    // The FINs stay marked (the addon dates the close when it saw both).
    s.fill(0, at, at + 5);
    return into;
  }

  /** A flow id reserved for a ticket (native SYNs: TcpUpgrader.ticket); -1 when none is free. */
  reserve(): number {
    return this.free.pop() ?? (this.next < this.capacity ? this.next++ : -1);
  }

  /** A reserved id whose ticket was never used. */
  unreserve(id: number): void {
    this.free.push(id);
  }

  remove(id: number): void {
    this.handle.remove(id);
    this.free.push(id);
  }

  /**
   * Packets passed natively each way, lost to a failed write/send, and refused by a full client
   * socket (sent by JS); and this thread's reads made in the loop turn of the fast path's write that
   * made them due (an upgraded flow's socket after its request reached the TUN, the TUN after a
   * pump wrote an answer), rather than one turn later; sameTurnTunCounted: those TUN reads that
   * stopped at the packets the writes made, without a read that found none (tun.cc, OXY_TUN_DUE_COUNT);
   * tunRingWrites / tunRingEnters / tunRingReads / tunRingUpgradeReads: this thread's fast-path TUN
   * writes submitted in batches, the io_uring_enter calls that took them, and the reads made in the
   * same calls of handed-over TUNs and of upgrade TUNs (fastnat.cc FlushTunWrites, ReadTunBatch;
   * tun.cc ReadBatch; all 0 with OXY_IP_TUN_RING=0, the reads 0 with OXY_IP_TUN_RING_READS=0).
   */
  get totals(): FastNatTotals {
    const values = this.handle.totals();
    return Object.fromEntries(TOTALS.map((name, i) => [name, values[i]])) as FastNatTotals;
  }
}
