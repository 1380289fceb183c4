import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { migrate } from './migrate.js';

export const STORE_FILE = 'oxy.db';

/** How long a writer waits for another process's transaction before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 10_000;

export type Db = Database.Database;

/** Opens (creating if needed) the store in a data directory, migrated to the latest schema. */
export function openDb(home: string, options: { readonly?: boolean } = {}): Db {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const path = join(home, STORE_FILE);
  const db = new Database(path);
  // The store holds tunnel secrets: owner-only, like the credentials files.
  chmodSync(path, 0o600);
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  // A fresh store gets its account tag once, not a write on every open.
  if (migrate(db)) db.prepare('INSERT OR IGNORE INTO account (id, account_tag) VALUES (1, ?)').run(randomBytes(16).toString('hex'));
  if (options.readonly) db.pragma('query_only = ON');
  return db;
}

/** Runs `fn` in a write transaction taken up front, so it never fails half-way on a lock upgrade. */
export function writeTransaction<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}
