import { EventEmitter } from 'node:events';
import type { SendQueue } from './send-queue.js';

/** The native side of an fd the addon polls: read/write interest, ref, close. */
export interface PolledHandle {
  setEvents(readable: boolean, writable: boolean): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/**
 * What the fd-owning wrappers (TUN, pktinfo UDP, SEQPACKET) share: a polled native handle,
 * a bounded send queue flushed when the fd turns writable, and reading that can be paused.
 */
export abstract class QueuedEndpoint<Events extends Record<keyof Events, unknown[]>, Handle extends PolledHandle, Item> extends EventEmitter<Events> {
  protected handle: Handle | undefined;
  protected reading = true;

  protected constructor(
    handle: Handle,
    protected readonly queue: SendQueue<Item>,
  ) {
    super();
    this.handle = handle;
  }

  /** Stops reading (the kernel queues, then drops, what arrives meanwhile). */
  pause(): void {
    this.reading = false;
    this.updateEvents();
  }

  resume(): void {
    this.reading = true;
    this.updateEvents();
  }

  /** Like net.Socket#ref/unref: an unref'd endpoint does not keep the process alive. */
  ref(): this {
    this.handle?.ref();
    return this;
  }

  unref(): this {
    this.handle?.unref();
    return this;
  }

  /** Closes at once; queued items are dropped (see disposeQueued). */
  close(): void {
    const handle = this.handle;
    if (!handle) return;
    this.handle = undefined;
    this.queue.clear((item) => this.disposeQueued(item));
    handle.close();
    (this as EventEmitter).emit('close');
  }

  /** Releases what a queued item owns when it is dropped unsent. */
  protected disposeQueued(_item: Item): void {}

  protected updateEvents(): void {
    this.handle?.setEvents(this.reading, this.queue.length > 0);
  }
}
