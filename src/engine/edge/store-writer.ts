/**
 * The edge's connection writers. SQLite: a worker thread with a connection of its own, so a
 * write that waits on another process's lock (busy_timeout) or on the disk blocks that
 * thread, never the event loop that carries traffic; it runs the store's connection writes
 * by name (store/tunnels.ts CONNECTION_WRITES). PostgreSQL: the store's own async queries
 * (they never block the event loop). Retrying is the caller's (bookkeeping.ts).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { CONNECTION_WRITES, type TunnelConnection } from '../../store/tunnels.js';
import { EDGE_WRITES, liveSince, type EdgeRecord } from '../../store/edges.js';
import type { Store } from '../../store/index.js';
import { SqliteDriver } from '../../store/sqlite.js';
import type { ConnectionWriter, ConnectionWrite } from './bookkeeping.js';

/** The writer for the store's backend. */
export function connectionWriter(store: Store): ConnectionWriter {
  return store.driver instanceof SqliteDriver ? new SqliteConnectionWriter(store.driver.path) : new StoreConnectionWriter(store);
}

/** Named parameters of each write (CONNECTION_WRITES). */
const params = (op: ConnectionWrite['op'], arg: unknown): Record<string, unknown> => {
  if (op === 'record') return { ...(arg as TunnelConnection), edgeId: (arg as TunnelConnection).edgeId ?? null };
  if (op === 'edge') return { ...(arg as EdgeRecord), groupId: (arg as EdgeRecord).groupId ?? null };
  if (op === 'pruneConnections' || op === 'pruneEdges') return { before: arg };
  return op === 'forgetAt' ? { edgeLocation: arg, liveSince: liveSince() } : { id: arg };
};

/**
 * PostgreSQL: the repository's queries, awaited off the data path by the book. A change of
 * which connections an edge holds runs as a write transaction, so it NOTIFYs: the other edges
 * learn at once where to forward a tunnel's traffic (heartbeats do not notify).
 */
class StoreConnectionWriter implements ConnectionWriter {
  constructor(private readonly store: Store) {}

  async run(op: ConnectionWrite['op'], arg: unknown): Promise<void> {
    if (op === 'record' || op === 'forget' || op === 'forgetAt' || op === 'edgeDown') return this.store.write(() => this.#run(op, arg));
    return this.#run(op, arg);
  }

  async #run(op: ConnectionWrite['op'], arg: unknown): Promise<void> {
    const t = this.store.tunnels;
    if (op === 'record') await t.recordConnection(arg as TunnelConnection);
    else if (op === 'forget') await t.forgetConnection(arg as string);
    else if (op === 'forgetAt') await t.forgetConnectionsAt(arg as string);
    else if (op === 'edge') await this.store.edges.record(arg as EdgeRecord);
    else if (op === 'edgeDown') await this.store.edges.remove(arg as string);
    else await this.store.driver.run(EDGE_WRITES[op], { before: arg as string });
  }

  async close(): Promise<void> {}
}

/** How long one attempt waits for another process's lock before it fails (and is retried). */
const WRITER_BUSY_TIMEOUT_MS = 1000;

// The worker's code is plain JavaScript in a string: the same source then runs from src/
// (vitest), dist/ and the bundled lib/, none of which can start a worker from the others'
// files. It opens the store the CLI already created and migrated.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = ' + workerData.busyTimeoutMs);
db.pragma('synchronous = NORMAL');
db.pragma('foreign_keys = ON');
const statements = {};
for (const [name, sql] of Object.entries(workerData.sql)) statements[name] = db.prepare(sql);
parentPort.on('message', ({ id, op, arg }) => {
  try {
    statements[op].run(arg);
    parentPort.postMessage({ id });
  } catch (err) {
    parentPort.postMessage({ id, error: { message: err.message, code: err.code } });
  }
});
`;

class WriteError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'WriteError';
  }
}

export class SqliteConnectionWriter implements ConnectionWriter {
  #worker?: Worker;
  #nextId = 0;
  readonly #waiting = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  /** `path`: the SQLite store file. */
  constructor(private readonly path: string) {}

  run(op: ConnectionWrite['op'], arg: unknown): Promise<void> {
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      worker.postMessage({ id, op, arg: params(op, arg) });
    });
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #start(): Worker {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        driver: createRequire(import.meta.url).resolve('better-sqlite3'),
        path: this.path,
        busyTimeoutMs: WRITER_BUSY_TIMEOUT_MS,
        sql: { ...CONNECTION_WRITES, ...EDGE_WRITES },
      },
    });
    worker.unref();
    worker.on('message', (m: { id: number; error?: { message: string; code?: string } }) => {
      const w = this.#waiting.get(m.id);
      this.#waiting.delete(m.id);
      if (m.error) w?.reject(new WriteError(m.error.message, m.error.code ?? 'SQLITE_ERROR'));
      else w?.resolve();
    });
    // A worker that could not open the store (or died) fails what it held; the next write starts another.
    const fail = (err: Error) => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const w of this.#waiting.values()) w.reject(new WriteError(err.message, 'OXY_ERR_STORE_WRITER'));
      this.#waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`store writer exited (${code})`)));
    this.#worker = worker;
    return worker;
  }
}
