import type { NativeError } from './errors.js';

/**
 * What the kernel had no room for (EAGAIN), kept in order and sent when the fd is
 * writable again. Bounded: past `limit` items, new ones are dropped and counted,
 * which is what a full UDP socket or TUN queue does anyway.
 */
export class SendQueue<T> {
  private items: T[] = [];
  private head = 0;
  /** Items refused because the queue was full. */
  dropped = 0;

  /**
   * `retain` copies an item as it is queued: callers may reuse their buffers as
   * soon as a send call returns, whether the item went out or waits here.
   */
  constructor(
    private readonly limit: number,
    private readonly retain: (item: T) => T = (item) => item,
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  /** Queues items[from..]; returns how many were queued (the rest are dropped). */
  pushFrom(items: readonly T[], from: number): number {
    const room = Math.max(0, this.limit - this.length);
    const take = Math.min(room, items.length - from);
    for (let i = 0; i < take; i++) this.items.push(this.retain(items[from + i]!));
    this.dropped += items.length - from - take;
    return take;
  }

  /**
   * Sends queued items with `send(items, start) → consumed`. An item that fails
   * (the error carries its `index`) is reported and skipped. Returns true when the
   * queue is empty afterwards.
   */
  flush(send: (items: readonly T[], start: number) => number, onError: (err: NativeError) => void): boolean {
    while (this.head < this.items.length) {
      let consumed: number;
      try {
        consumed = send(this.items, this.head);
      } catch (err) {
        const failed = (err as NativeError).index ?? this.head;
        (err as NativeError).index = undefined;
        this.head = failed + 1;
        onError(err as NativeError);
        continue;
      }
      if (consumed === 0) break;
      this.head += consumed;
    }
    if (this.head >= this.items.length) {
      this.items = [];
      this.head = 0;
      return true;
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return false;
  }

  /** Empties the queue, handing each item to `dispose` (e.g. to close dup'd fds). */
  clear(dispose?: (item: T) => void): void {
    if (dispose) for (let i = this.head; i < this.items.length; i++) dispose(this.items[i]!);
    this.items = [];
    this.head = 0;
  }
}
