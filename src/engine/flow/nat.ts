/**
 * NAT slots: (address, port) pairs from a private range, one per upgraded or
 * downgraded TCP flow, so the kernel in the namespace sees every flow as a distinct
 * 4-tuple. Slots are numbered 0..capacity-1: slot = addressIndex × ports + (port − firstPort).
 *
 * Freed slots go to the back of a FIFO and never-used slots are handed out first, so a
 * 4-tuple is reused as late as possible (the kernel may still hold the old one in
 * TIME_WAIT). Memory is O(slots ever freed), not O(capacity).
 */
import { parseAddress } from '../packet/index.js';

export interface NatPoolOptions {
  /** First address of the range (IPv4 or IPv6 text); its last 32 bits are counted up. */
  base: string;
  /** Addresses in the range. */
  addresses: number;
  /** Port range per address, inclusive. Default 1024–65535. */
  firstPort?: number;
  lastPort?: number;
  /** Cap on slots (e.g. small in tests to reach exhaustion). Default: addresses × ports. */
  maxSlots?: number;
}

export class NatPool {
  readonly version: 4 | 6;
  readonly capacity: number;
  readonly firstPort: number;
  readonly ports: number;
  /** Bytes of the base address; the last 4 bytes vary with the slot. */
  private readonly base: Buffer;
  private readonly baseLow: number;
  private readonly addressCount: number;
  private fresh = 0;
  private freed: number[] = [];
  private freedHead = 0;
  inUse = 0;
  /** Allocations that found no slot. */
  exhausted = 0;

  constructor(options: NatPoolOptions) {
    this.base = parseAddress(options.base);
    this.version = this.base.length === 4 ? 4 : 6;
    this.baseLow = this.base.readUInt32BE(this.base.length - 4);
    this.firstPort = options.firstPort ?? 1024;
    this.ports = (options.lastPort ?? 65535) - this.firstPort + 1;
    this.addressCount = options.addresses;
    if (this.ports <= 0 || options.addresses <= 0) throw new RangeError('NAT pool needs at least one address and one port');
    this.capacity = Math.min(options.maxSlots ?? Infinity, options.addresses * this.ports);
  }

  /** A free slot number, or -1 when every slot is taken (counted in `exhausted`). */
  allocate(): number {
    let slot: number;
    if (this.fresh < this.capacity) slot = this.fresh++;
    else if (this.freedHead < this.freed.length) {
      slot = this.freed[this.freedHead++]!;
      if (this.freedHead > 1024 && this.freedHead * 2 > this.freed.length) {
        this.freed = this.freed.slice(this.freedHead);
        this.freedHead = 0;
      }
    } else {
      this.exhausted++;
      return -1;
    }
    this.inUse++;
    return slot;
  }

  release(slot: number): void {
    if (slot < 0) return;
    this.inUse--;
    this.freed.push(slot);
  }

  get available(): number {
    return this.capacity - this.inUse;
  }

  /** The slot's address as fresh bytes. */
  address(slot: number): Buffer {
    const out = Buffer.allocUnsafe(this.base.length);
    this.writeAddress(slot, out);
    return out;
  }

  /** Writes the slot's address into `out` (4 or 16 bytes) without allocating. */
  writeAddress(slot: number, out: Uint8Array): void {
    out.set(this.base);
    const v = (this.baseLow + Math.floor(slot / this.ports)) >>> 0;
    const o = out.length - 4;
    out[o] = v >>> 24;
    out[o + 1] = (v >>> 16) & 0xff;
    out[o + 2] = (v >>> 8) & 0xff;
    out[o + 3] = v & 0xff;
  }

  port(slot: number): number {
    return this.firstPort + (slot % this.ports);
  }

  /**
   * The slot an address+port belongs to (bytes at `offset` of `buf`), or -1 if outside
   * the pool. Only the last 32 bits are compared for IPv6 beyond the prefix check.
   */
  slotOf(buf: Uint8Array, offset: number, port: number): number {
    const length = this.base.length;
    for (let i = 0; i < length - 4; i++) if (buf[offset + i] !== this.base[i]) return -1;
    const o = offset + length - 4;
    const low = ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
    const index = (low - this.baseLow) >>> 0;
    const portIndex = port - this.firstPort;
    if (index >= this.addressCount || portIndex < 0 || portIndex >= this.ports) return -1;
    const slot = index * this.ports + portIndex;
    return slot < this.capacity ? slot : -1;
  }

  /** The range as CIDR-ish text for logs: first and last address. */
  describe(): string {
    return `${this.base.length === 4 ? 'v4' : 'v6'} ${this.capacity} slots`;
  }
}
