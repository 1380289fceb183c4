import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, linkSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { migrate } from './migrate.js';
import { checkStoreFile, explainStoreError, isReadOnlyDir, readOnlySnapshot } from './sqlite-file.js';

export const STORE_FILE = 'oxy.db';

/** How long a writer waits for another process's transaction before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 10_000;

export type Db = Database.Database;

/** The store file a connection stands for (a read-only directory's store is read from a copy). */
const storePaths = new WeakMap<Db, string>();

/**
 * Opens (creating if needed) the store in a data directory, migrated to the latest schema.
 * An empty, unreadable or damaged file is refused (never taken for a new, empty store); on a
 * read-only directory the store is read from a private copy, and a write says the directory
 * is read-only; a full disk is said as such.
 */
export function openDb(home: string, options: { readonly?: boolean } = {}): Db {
  const path = join(home, STORE_FILE);
  try {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    checkStoreFile(path);
    if (isReadOnlyDir(home)) return openSnapshot(path);
    if (!existsSync(path)) createStoreFile(path);
    const db = new Database(path, { fileMustExist: true });
    // The store holds tunnel secrets: owner-only, like the credentials files.
    chmodSync(path, 0o600);
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    // A store made by an older oxyctl gets what is new.
    migrate(db);
    if (options.readonly) db.pragma('query_only = ON');
    return db;
  } catch (err) {
    throw explainStoreError(err, path);
  }
}

/**
 * Creates the store whole: migrated, with its account tag, in a temporary file linked into
 * place. So an oxy.db is never seen half-made, and an empty one is always a damaged store
 * (refused), never one another process is creating. Of processes racing to create it, one
 * link wins and the others open the winner's.
 */
function createStoreFile(path: string): void {
  const tmp = `${path}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const db = new Database(tmp);
    try {
      db.pragma('journal_mode = WAL');
      migrate(db);
      db.prepare('INSERT OR IGNORE INTO account (id, account_tag) VALUES (1, ?)').run(randomBytes(16).toString('hex'));
    } finally {
      db.close(); // checkpoints: everything is in the file itself
    }
    chmodSync(tmp, 0o600);
    try {
      linkSync(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  } finally {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
  }
}

/** The store of a read-only directory, from a copy: reads work, writes fail as SQLITE_READONLY. */
function openSnapshot(path: string): Db {
  const snapshot = readOnlySnapshot(path);
  try {
    const db = new Database(snapshot.path);
    storePaths.set(db, path);
    // An older schema is brought up to date in the copy only.
    migrate(db);
    db.pragma('query_only = ON');
    const close = db.close.bind(db);
    db.close = () => {
      close();
      snapshot.dispose();
      process.off('exit', snapshot.dispose);
      return db;
    };
    process.once('exit', snapshot.dispose);
    return db;
  } catch (err) {
    snapshot.dispose();
    throw err;
  }
}

/** Runs `fn` in a write transaction taken up front, so it never fails half-way on a lock upgrade. */
export function writeTransaction<T>(db: Db, fn: () => T): T {
  try {
    return db.transaction(fn).immediate();
  } catch (err) {
    throw explainStoreError(err, storePaths.get(db) ?? db.name);
  }
}
