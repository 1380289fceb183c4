/**
 * The edge's connection bookkeeping (what `tunnel list` / `tunnel info` show), written
 * without ever holding up traffic: writes are queued and run one at a time by a writer off
 * the event loop; a write that fails (another process holds the store's lock, the disk is
 * full) is retried with backoff and logged, never fatal. Registering a connection never
 * waits for its record.
 *
 * The queue stays bounded while the store is unavailable: a connection that closes before
 * its record was written cancels the record instead of queueing a delete.
 */
import type { EdgeRecord, TunnelConnection } from '../../store/index.js';
import type { Logger } from '../observe/log.js';

/** Runs one named write of the store's connection writes; rejects with the store's error. */
export interface ConnectionWriter {
  run(op: ConnectionWrite['op'], arg: unknown): Promise<void>;
  close(): Promise<void>;
}

export type ConnectionWrite =
  | { op: 'record'; arg: TunnelConnection }
  | { op: 'forget'; arg: string }
  | { op: 'forgetAt'; arg: string }
  /** The edge itself (edges table): recorded, then its heartbeat renewed. */
  | { op: 'edge'; arg: EdgeRecord }
  | { op: 'edgeDown'; arg: string }
  /** Edges dead since before `arg` (ISO time): their connections, then their rows. */
  | { op: 'pruneConnections'; arg: string }
  | { op: 'pruneEdges'; arg: string };

/** Errors no retry can fix: the write is dropped (and logged). */
const PERMANENT = /^SQLITE_(CONSTRAINT|ERROR$|MISMATCH$|RANGE$)|^(22|23|42)[0-9A-Z]{3}$/;

/** While writes keep failing, say so at most this often. */
const REPEAT_LOG_MS = 30_000;

export class ConnectionBook {
  readonly #queue: ConnectionWrite[] = [];
  #running = false;
  #closed = false;
  #failures = 0;
  #lastLog = 0;
  #timer?: NodeJS.Timeout;
  #idle: (() => void)[] = [];

  constructor(
    private readonly writer: ConnectionWriter,
    private readonly log: Logger,
    private readonly backoff = { minMs: 100, maxMs: 2000 },
  ) {}

  /** Writes that have not landed yet. */
  get pending(): number {
    return this.#queue.length;
  }

  record(c: TunnelConnection): void {
    this.#push({ op: 'record', arg: c });
  }

  forget(id: string): void {
    const i = this.#queue.findIndex((w, n) => w.op === 'record' && w.arg.id === id && !(n === 0 && this.#running));
    if (i >= 0) this.#queue.splice(i, 1);
    else this.#push({ op: 'forget', arg: id });
  }

  /** Forgets what an earlier run at this edge location recorded (never a live edge's rows there). */
  forgetAt(location: string): void {
    this.#push({ op: 'forgetAt', arg: location });
  }

  /**
   * Records this edge or renews its heartbeat. A heartbeat still waiting in the queue (the
   * store is unavailable) is brought up to date rather than queued again.
   */
  beat(edge: EdgeRecord): void {
    const waiting = this.#queue.findIndex((w, n) => w.op === 'edge' && !(n === 0 && this.#running));
    if (waiting >= 0) this.#queue[waiting] = { op: 'edge', arg: edge };
    else this.#push({ op: 'edge', arg: edge });
  }

  /** Forgets the edges dead since before `before`, and their connections. */
  prune(before: string): void {
    this.#push({ op: 'pruneConnections', arg: before });
    this.#push({ op: 'pruneEdges', arg: before });
  }

  /** The edge stops: its record goes (after the forgets queued before). */
  edgeDown(id: string): void {
    this.#push({ op: 'edgeDown', arg: id });
  }

  /** Resolves once every queued write has landed (or been dropped). */
  idle(): Promise<void> {
    return this.#queue.length === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Waits up to `timeoutMs` for the queue to drain, then stops the writer. */
  async close(timeoutMs = 2000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise((r) => (timer = setTimeout(r, timeoutMs).unref()))]);
    clearTimeout(timer);
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#queue.length) {
      this.log.warn({ pending: this.#queue.length }, 'Stopping with connection records not written to the store; the next start at this location clears them');
    }
    await this.writer.close();
  }

  #push(w: ConnectionWrite): void {
    if (this.#closed) return;
    this.#queue.push(w);
    if (!this.#running && !this.#timer) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#timer = undefined;
    this.#running = true;
    while (this.#queue.length && !this.#closed) {
      const w = this.#queue[0];
      try {
        await this.writer.run(w.op, w.arg);
      } catch (err) {
        const code = (err as { code?: string }).code ?? '';
        if (PERMANENT.test(code)) {
          this.log.error({ err, op: w.op }, 'Dropped a connection record the store refused');
        } else {
          this.#failed(err, w);
          return;
        }
      }
      this.#queue.shift();
      if (this.#failures) {
        this.log.info({ attempts: this.#failures + 1, pending: this.#queue.length }, 'Store writable again; writing the queued connection records');
        this.#failures = 0;
      }
    }
    this.#running = false;
    if (!this.#queue.length) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #failed(err: unknown, w: ConnectionWrite): void {
    this.#running = false;
    this.#failures++;
    const now = Date.now();
    if (this.#failures === 1 || now - this.#lastLog >= REPEAT_LOG_MS) {
      this.#lastLog = now;
      this.log.warn(
        { err, op: w.op, attempts: this.#failures, pending: this.#queue.length },
        'Could not write connection records to the store; retrying (traffic is not affected)',
      );
    }
    if (this.#closed) return;
    const delay = Math.min(this.backoff.maxMs, this.backoff.minMs * 2 ** Math.min(this.#failures - 1, 16));
    this.#timer = setTimeout(() => void this.#drain(), delay).unref();
  }
}
