// The edge's connection bookkeeping against a real store that another connection keeps
// locked: nothing throws, the queue stays bounded (a connection that closes before its record
// landed cancels it), and once the lock is released the records land in order.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createLogger } from '../../../src/engine/observe/log.js';
import { ConnectionBook } from '../../../src/engine/edge/bookkeeping.js';
import { SqliteConnectionWriter } from '../../../src/engine/edge/store-writer.js';
import { Store } from '../../../src/store/index.js';
import { tempHome } from '../../helpers/cli.js';
import { until } from '../../helpers/until.js';

let home: string;
let cleanup: () => void;
let store: Store;
beforeEach(async () => {
  ({ home, cleanup } = tempHome());
  // The SQLite writer's own test: always a SQLite store, whichever leg runs it.
  store = await Store.open({ home, url: `sqlite:${join(home, 'oxy.db')}` });
  await store.tunnels.insert({ id: 't1', name: 'web', secret: Buffer.alloc(32).toString('base64'), createdAt: '2026-12-02T00:00:00Z' });
});
afterEach(async () => {
  await store.close();
  cleanup();
});

const connection = (id: string) => ({
  id,
  tunnelId: 't1',
  connectorId: 'c1',
  connIndex: 0,
  protocol: 'quic',
  originIp: '127.0.0.1',
  edgeLocation: 'here',
  clientVersion: '',
  arch: '',
  openedAt: '2026-12-02T00:00:00Z',
});

it('queues through a held lock without throwing or growing, and lands the records once it is released', async () => {
  const lines: string[] = [];
  const book = new ConnectionBook(new SqliteConnectionWriter(join(home, 'oxy.db')), createLogger({ stream: { write: (s: string) => lines.push(s) } }), {
    minMs: 20,
    maxMs: 100,
  });
  const locker = new Database(join(home, 'oxy.db'));
  locker.exec('BEGIN IMMEDIATE');
  try {
    // 200 connections come and go while the store is locked; 2 stay.
    for (let i = 0; i < 200; i++) book.record(connection(`gone-${i}`));
    for (let i = 0; i < 200; i++) book.forget(`gone-${i}`);
    book.record(connection('stays-1'));
    book.record(connection('stays-2'));
    expect(book.pending).toBeLessThanOrEqual(4); // the one in flight, and its forget, at most
    // The writer's 1 s busy timeout passes at least once: waited for (bounded), not slept on —
    // under load the first failed write can come well after 1.5 s.
    await until(() => lines.join('').includes('Could not write connection records to the store; retrying'), 30_000, 'the failed write to be logged');
    expect(book.pending).toBeLessThanOrEqual(4);
  } finally {
    locker.exec('ROLLBACK');
    locker.close();
  }
  await book.idle();
  expect((await store.tunnels.connections('t1')).map((c) => c.id).sort()).toEqual(['stays-1', 'stays-2']);
  expect(lines.join('')).toContain('Store writable again');
  await book.close();
});
