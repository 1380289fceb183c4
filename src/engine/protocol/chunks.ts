/**
 * A queue of received chunks that parsers consume from. `consume(n)` returns a view into
 * the head chunk when the bytes lie in one chunk (the common case) and copies only when a
 * read straddles chunks.
 */
export class ChunkQueue {
  private chunks: Buffer[] = [];
  private headOffset = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Take `n` bytes (n <= length). A view when possible, a copy otherwise. */
  consume(n: number): Buffer {
    if (n > this.total) throw new RangeError(`consume(${n}) with ${this.total} bytes queued`);
    this.total -= n;
    const head = this.chunks[0];
    if (n === 0 || head === undefined) return Buffer.alloc(0);
    const avail = head.length - this.headOffset;
    if (n <= avail) {
      const view = head.subarray(this.headOffset, this.headOffset + n);
      this.advanceHead(n, avail);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    while (written < n) {
      const chunk = this.chunks[0]!;
      const have = chunk.length - this.headOffset;
      const take = Math.min(have, n - written);
      chunk.copy(out, written, this.headOffset, this.headOffset + take);
      written += take;
      this.advanceHead(take, have);
    }
    return out;
  }

  /** The first `n` bytes without consuming them (view when possible). */
  peek(n: number): Buffer {
    if (n > this.total) throw new RangeError(`peek(${n}) with ${this.total} bytes queued`);
    const head = this.chunks[0];
    if (n === 0 || head === undefined) return Buffer.alloc(0);
    if (head.length - this.headOffset >= n) return head.subarray(this.headOffset, this.headOffset + n);
    const out = Buffer.allocUnsafe(n);
    let written = 0;
    for (let i = 0; written < n; i++) {
      const chunk = this.chunks[i]!;
      const from = i === 0 ? this.headOffset : 0;
      written += chunk.copy(out, written, from, Math.min(chunk.length, from + n - written));
    }
    return out;
  }

  /** Read a big-endian unsigned integer of `size` (1, 2 or 4) bytes without copying. */
  readUInt(size: 1 | 2 | 4): number {
    const bytes = this.consume(size);
    return size === 1 ? bytes[0]! : size === 2 ? bytes.readUInt16BE(0) : bytes.readUInt32BE(0);
  }

  /** Everything left, as the list of remaining views. Empties the queue. */
  drain(): Buffer[] {
    const out = this.chunks.map((c, i) => (i === 0 ? c.subarray(this.headOffset) : c));
    this.chunks = [];
    this.headOffset = 0;
    this.total = 0;
    return out.filter((c) => c.length > 0);
  }

  private advanceHead(n: number, avail: number): void {
    if (n === avail) {
      this.chunks.shift();
      this.headOffset = 0;
    } else {
      this.headOffset += n;
    }
  }
}
