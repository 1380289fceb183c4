/**
 * IP fragment reassembly for the edge's on-ramp path: IPv4 (RFC 791) and IPv6 fragment
 * headers (RFC 8200 §4.5), per flow scope, so two tenants' (or vnets') fragments with the
 * same addresses and identification never mix.
 *
 * A datagram is keyed by (scope, src, dst, identification), plus the protocol for IPv4.
 * Its fragments are kept copied (on-ramps hand over views into reused batch buffers),
 * sorted by offset, never overlapping: a fragment that overlaps another drops the whole
 * datagram (RFC 5722 for IPv6; the same for IPv4, as Linux does since 2018), except an
 * exact duplicate (same offset and length), which is dropped alone. When every byte is
 * there the datagram is rebuilt from the first fragment's headers as if it had arrived
 * whole, and its fragments are freed.
 *
 * Limits (all counted, see {@link ReassemblyDrop}): a timeout from the first fragment,
 * a memory budget for pending fragments per edge and per tenant, and 65,535 bytes for
 * the reassembled datagram (IPv4 total length, IPv6 payload length).
 *
 * Nothing here runs for ordinary packets; with no datagram pending there is no timer.
 */
import { IPV6_FRAGMENT_HEADER_LENGTH, PacketView, finishChecksum, ipv6NextHeaderField, parsePacket, sumWords } from '../packet/index.js';
import type { FlowScope } from './flow.js';

export interface ReassemblyLimits {
  /**
   * How long a datagram may wait for its missing fragments, from its first-arriving one
   * (ms). Default 5,000, for IPv4 and IPv6 alike — shorter than the 30 s Linux uses and
   * the 60 s ceiling of RFC 8200 on purpose: a device's stack sends all fragments of a
   * datagram back to back over one on-ramp, so a fragment that is not there within
   * seconds was lost (IP never resends one), and waiting longer only lets loss — or a
   * tenant sending first fragments on purpose — hold the memory budget. A shorter wait
   * also narrows the IPv4 identification wrap-around window (RFC 4963).
   */
  timeoutMs?: number;
  /** Bytes of pending fragments the edge holds at most. Default 16 MiB (Linux holds 4 MiB per namespace). */
  maxBytes?: number;
  /**
   * Bytes of pending fragments one tenant holds at most, so one tenant cannot fill the
   * budget and starve the others. Default 1 MiB: ~16 pending 64 KiB datagrams or ~600
   * 1,500-byte fragments; datagrams that arrive whole complete in microseconds.
   */
  maxBytesPerTenant?: number;
}

/**
 * Why fragments were dropped; stable strings, also the counter names in the edge's
 * `stats.dropped`. Each counts one event: a fragment refused, or a datagram abandoned.
 */
export type ReassemblyDrop =
  /** Datagram abandoned: a fragment overlapped another one (RFC 5722, RFC 8200 §4.5). */
  | 'fragment-overlap'
  /** Datagram abandoned: fragments disagree on where it ends (a second last fragment, data past the end). */
  | 'fragment-inconsistent'
  /** Datagram abandoned: not complete within the timeout. */
  | 'fragment-timeout'
  /** Fragment refused: the same offset and length as one already held. */
  | 'fragment-duplicate'
  /** Fragment refused: empty, or not a multiple of 8 bytes without being the last (RFC 8200 §4.5). */
  | 'fragment-bad-length'
  /** Fragment refused: the datagram would exceed 65,535 bytes. */
  | 'fragment-too-big'
  /** Datagram abandoned once complete: it is a fragment again (a second IPv6 fragment header, RFC 8200 §4.1). */
  | 'fragment-nested'
  /** Fragment refused, and its datagram abandoned: the edge's budget is full. */
  | 'fragment-memory'
  /** Fragment refused, and its datagram abandoned: the tenant's share is full. */
  | 'fragment-tenant-memory';

export interface ReassemblerOptions {
  limits?: ReassemblyLimits;
  /** Every drop, as it happens. */
  onDrop(reason: ReassemblyDrop): void;
  /**
   * A datagram timed out after its first fragment (offset 0) had arrived: the owner may
   * answer with ICMP "fragment reassembly time exceeded" (RFC 792, RFC 8200 §4.5).
   * `firstFragment` is that fragment as received; `attachment` what was given with it.
   */
  onTimeout?(firstFragment: Buffer, attachment: unknown): void;
}

/** Largest IPv4 total length and IPv6 payload length without a jumbogram. */
export const MAX_DATAGRAM = 65_535;

/**
 * What one held fragment costs beyond its bytes (its entry object, the Buffer and its
 * backing store), so that many tiny fragments cannot hold more than the budget says.
 */
export const FRAGMENT_OVERHEAD_BYTES = 256;

interface Piece {
  offset: number;
  end: number;
  data: Uint8Array;
}

class PendingDatagram {
  /** Sorted by offset, never overlapping. */
  readonly pieces: Piece[] = [];
  /** The offset-0 fragment as received: its headers become the datagram's. */
  first: Buffer | undefined;
  /** Fragmentable bytes in all, once the last fragment (M=0) arrived; -1 before. */
  total = -1;
  received = 0;
  /** Charged against the budgets. */
  bytes = 0;
  attachment: unknown;

  constructor(
    readonly scope: FlowScope,
    readonly key: string,
    readonly createdAt: number,
  ) {}
}

export class Reassembler {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly maxBytesPerTenant: number;
  /** Datagrams completed. */
  completed = 0;
  /** Bytes charged for pending fragments now. */
  bytes = 0;
  private readonly byScope = new Map<FlowScope, Map<string, PendingDatagram>>();
  /** Every pending datagram, oldest first (insertion order): what the sweep walks. */
  private readonly byAge = new Set<PendingDatagram>();
  private readonly onDrop: (reason: ReassemblyDrop) => void;
  private readonly onTimeout: ((firstFragment: Buffer, attachment: unknown) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ReassemblerOptions) {
    this.timeoutMs = options.limits?.timeoutMs ?? 5_000;
    this.maxBytes = options.limits?.maxBytes ?? 16 * 1024 * 1024;
    this.maxBytesPerTenant = options.limits?.maxBytesPerTenant ?? 1024 * 1024;
    this.onDrop = options.onDrop;
    this.onTimeout = options.onTimeout;
  }

  /** Datagrams waiting for fragments. */
  get pending(): number {
    return this.byAge.size;
  }

  /**
   * Takes one fragment (`view.isFragment`), parsed from a packet the caller may reuse
   * afterwards. Returns the whole datagram when this fragment completed it (a new
   * Buffer, the IP packet as the sender had it before fragmenting), else undefined.
   * `attachment` is handed back by onTimeout; `now` (ms) is for tests.
   */
  add(scope: FlowScope, view: PacketView, attachment?: unknown, now = Date.now()): Buffer | undefined {
    const buf = view.buf;
    const offset = view.fragmentOffset;
    const end = offset + (view.length - view.l4Offset);
    const last = !view.moreFragments;
    if (end === offset || (!last && (end & 7) !== 0)) return this.refuse('fragment-bad-length');
    // Bytes before the fragmentable part in the reassembled datagram: the IPv4 header, or
    // the IPv6 extension headers ahead of the fragment header.
    const before = view.version === 4 ? view.l4Offset : view.l4Offset - IPV6_FRAGMENT_HEADER_LENGTH - 40;
    if (before + end > MAX_DATAGRAM) return this.refuse('fragment-too-big');

    const key = datagramKey(view);
    let datagrams = this.byScope.get(scope);
    let datagram = datagrams?.get(key);

    const charge = view.length + FRAGMENT_OVERHEAD_BYTES;
    const tenant = scope.tenantState;
    const full: ReassemblyDrop | undefined =
      this.bytes + charge > this.maxBytes ? 'fragment-memory' : tenant.fragmentBytes + charge > this.maxBytesPerTenant ? 'fragment-tenant-memory' : undefined;
    if (full) {
      // Its datagram can no longer complete: free what it holds now rather than at the timeout.
      if (datagram) this.discard(datagram);
      return this.refuse(full);
    }

    if (datagram) {
      if (datagram.total >= 0 && (end > datagram.total || (last && end !== datagram.total))) return this.abandon(datagram, 'fragment-inconsistent');
      if (last && datagram.total < 0 && datagram.pieces[datagram.pieces.length - 1].end > end) return this.abandon(datagram, 'fragment-inconsistent');
    } else {
      if (!datagrams) {
        datagrams = new Map();
        this.byScope.set(scope, datagrams);
      }
      datagram = new PendingDatagram(scope, key, now);
      datagrams.set(key, datagram);
      this.byAge.add(datagram);
      this.startTimer();
    }

    const pieces = datagram.pieces;
    const at = insertionIndex(pieces, offset);
    const previous = pieces[at - 1];
    const next = pieces[at];
    if (next && next.offset === offset && next.end === end) return this.refuse('fragment-duplicate');
    if ((previous && previous.end > offset) || (next && next.offset < end)) return this.abandon(datagram, 'fragment-overlap');

    // Keep a copy: the caller's buffer is reused for the next packet.
    const copy = Buffer.allocUnsafeSlow(view.length);
    buf.copy(copy, 0, 0, view.length);
    if (offset === 0) {
      datagram.first = copy;
      datagram.attachment = attachment;
    }
    pieces.splice(at, 0, { offset, end, data: copy.subarray(view.l4Offset) });
    datagram.received += end - offset;
    if (last) datagram.total = end;
    datagram.bytes += charge;
    this.bytes += charge;
    tenant.fragmentBytes += charge;

    if (datagram.received !== datagram.total || !datagram.first) return undefined;
    this.discard(datagram);
    const whole = rebuild(datagram);
    if (typeof whole === 'string') return this.refuse(whole);
    this.completed++;
    return whole;
  }

  /** Abandons datagrams older than the timeout. Runs by itself while any is pending; public for tests. */
  sweep(now = Date.now()): number {
    let expired = 0;
    for (const datagram of this.byAge) {
      if (now - datagram.createdAt < this.timeoutMs) break;
      this.abandon(datagram, 'fragment-timeout');
      expired++;
      if (datagram.first) this.onTimeout?.(datagram.first, datagram.attachment);
    }
    return expired;
  }

  /** Drops everything pending and stops the timer. */
  close(): void {
    for (const datagram of [...this.byAge]) this.discard(datagram);
    this.stopTimer();
  }

  private refuse(reason: ReassemblyDrop): undefined {
    this.onDrop(reason);
    return undefined;
  }

  private abandon(datagram: PendingDatagram, reason: ReassemblyDrop): undefined {
    this.discard(datagram);
    return this.refuse(reason);
  }

  /** Forgets a datagram and gives its bytes back to the budgets. */
  private discard(datagram: PendingDatagram): void {
    if (!this.byAge.delete(datagram)) return;
    const datagrams = this.byScope.get(datagram.scope)!;
    datagrams.delete(datagram.key);
    if (datagrams.size === 0) this.byScope.delete(datagram.scope);
    this.bytes -= datagram.bytes;
    datagram.scope.tenantState.fragmentBytes -= datagram.bytes;
    if (this.byAge.size === 0) this.stopTimer();
  }

  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), Math.min(1000, Math.max(50, this.timeoutMs / 4)));
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * (src, dst, identification) and, for IPv4, the protocol (RFC 791; RFC 8200 §4.5 leaves
 * it out for IPv6), one UTF-16 unit per 16 bits as flow keys are.
 */
function datagramKey(view: PacketView): string {
  const b = view.buf;
  if (view.version === 4) {
    return String.fromCharCode(
      0x400 | view.protocol,
      (b[12] << 8) | b[13],
      (b[14] << 8) | b[15],
      (b[16] << 8) | b[17],
      (b[18] << 8) | b[19],
      (b[4] << 8) | b[5],
    );
  }
  const id = view.l4Offset - 4;
  let key = String.fromCharCode(0x600, (b[id] << 8) | b[id + 1], (b[id + 2] << 8) | b[id + 3]);
  for (let i = 8; i < 40; i += 2) key += String.fromCharCode((b[i] << 8) | b[i + 1]);
  return key;
}

/** Index of the first piece at or after `offset`; fragments mostly come in order, so try the end first. */
function insertionIndex(pieces: Piece[], offset: number): number {
  let high = pieces.length;
  if (high === 0 || pieces[high - 1].offset < offset) return high;
  let low = 0;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (pieces[mid].offset < offset) low = mid + 1;
    else high = mid;
  }
  return low;
}

const scratch = new PacketView();

/**
 * The datagram before fragmentation: the first fragment's headers, every piece's data.
 * Refused when it exceeds 65,535 bytes or is itself a fragment (never reassembled twice,
 * so a crafted datagram cannot make reassembly recurse).
 */
function rebuild(datagram: PendingDatagram): Buffer | ReassemblyDrop {
  const first = datagram.first!;
  const v4 = first[0] >> 4 === 4;
  // IPv4: the whole header of the first fragment (all options, RFC 791). IPv6: the
  // unfragmentable part, i.e. everything before the fragment header.
  const headerLength = v4 ? (first[0] & 0x0f) * 4 : first.length - datagram.pieces[0].data.length - IPV6_FRAGMENT_HEADER_LENGTH;
  const length = headerLength + datagram.total;
  if (length - (v4 ? 0 : 40) > MAX_DATAGRAM) return 'fragment-too-big';
  const out = Buffer.allocUnsafe(length);
  first.copy(out, 0, 0, headerLength);
  for (const piece of datagram.pieces) out.set(piece.data, headerLength + piece.offset);
  if (v4) {
    out.writeUInt16BE(length, 2);
    out[6] &= 0x40; // keep DF, clear MF and the offset
    out[7] = 0;
    out.writeUInt16BE(0, 10);
    out.writeUInt16BE(finishChecksum(sumWords(out, 0, headerLength)), 10);
  } else {
    out.writeUInt16BE(length - 40, 4);
    // The header that named the fragment header now names what the fragment header did.
    out[ipv6NextHeaderField(out, headerLength)] = first[headerLength];
    const parsed = parsePacket(out, scratch);
    if (parsed.ok && parsed.isFragment) return 'fragment-nested';
  }
  return out;
}
