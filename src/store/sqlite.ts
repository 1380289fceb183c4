/**
 * The embedded backend: one SQLite file (better-sqlite3), WAL, foreign keys, a busy
 * timeout. Calls are synchronous underneath — the CLI's start-up stays a file open,
 * with no worker thread — and wrapped in the async interface the PostgreSQL backend needs.
 *
 * An empty, unreadable or damaged file is refused (never taken for a new, empty store); a new
 * store is created whole in a temporary file linked into place; on a read-only directory the
 * store is read from a private copy and a write says the directory is read-only; a full disk
 * and a held lock are said as such (sqlite-file.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, type FSWatcher, linkSync, mkdirSync, rmSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import Database from 'better-sqlite3';
import { loadMigrations, migrationsDir, storeTooNew, type Migration } from './migrate.js';
import { forSqlite, type Driver, type Params } from './sql.js';
import { isOxyError, OxyError } from '../core/errors.js';
import { checkStoreFile, explainStoreError, isReadOnlyDir, readOnlySnapshot } from './sqlite-file.js';

/** A wake that saw no commit reads `data_version` once more this much later (the WAL index follows the WAL write). */
const WAKE_AGAIN_MS = 10;
/** Wakes read `data_version` at most once per this interval. */
const WAKE_GAP_MS = 50;

/** How long a writer waits for another process's transaction before SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 10_000;

export class SqliteDriver implements Driver {
  readonly dialect = 'sqlite' as const;
  readonly db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  /** Set while this process holds the write transaction (the connection is shared). */
  readonly #inTransaction = new AsyncLocalStorage<true>();
  #writers: Promise<unknown> = Promise.resolve();

  /** A read-only directory's store is read from a copy, removed at close. */
  #snapshot?: { path: string; dispose: () => void };

  /** Set when a full disk left no room to open the store in place: writes say this, reads use a copy. */
  #diskFull?: OxyError;

  constructor(readonly path: string) {
    let db: Database.Database | undefined;
    let copied = false;
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      checkStoreFile(path);
      if (isReadOnlyDir(dirname(path))) {
        copied = true;
        this.db = this.#openSnapshot();
        return;
      }
      if (!existsSync(path)) createStoreFile(path);
      this.db = db = new Database(path, { fileMustExist: true });
      // The store holds tunnel secrets: owner-only, like the credentials files.
      chmodSync(path, 0o600);
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = ON');
    } catch (err) {
      db?.close();
      const explained = explainStoreError(err, path);
      // A full disk has no room for the -shm index every WAL reader needs: read a copy in
      // $TMPDIR (list, info and get keep working), and tell writers the disk is full.
      if (!isOxyError(explained, 'OXY_ERR_STORE_DISK_FULL') || copied || !existsSync(path)) throw explained;
      try {
        this.db = this.#openSnapshot();
      } catch {
        throw explained;
      }
      this.#diskFull = explained;
    }
  }

  get unwritable(): OxyError | undefined {
    if (this.#diskFull) return this.#diskFull;
    if (this.#snapshot)
      return new OxyError(
        'OXY_ERR_STORE_READ_ONLY',
        `The store in ${dirname(this.path)} is read-only, and this command writes it. Run it where the data directory can be written.`,
      );
    return undefined;
  }

  /** Opens a private copy of the store, read-only (see readOnlySnapshot). */
  #openSnapshot(): Database.Database {
    const snapshot = readOnlySnapshot(this.path);
    try {
      const db = new Database(snapshot.path);
      // Assigned before the migration, which runs on this.db. An older schema is brought up to date in the copy only.
      (this as { db: Database.Database }).db = db;
      this.migrateSync();
      db.pragma('query_only = ON');
      this.#snapshot = snapshot;
      process.once('exit', snapshot.dispose);
      return db;
    } catch (err) {
      snapshot.dispose();
      throw err;
    }
  }

  /** A store error in the user's terms; on a full disk, a write refused by the read-only copy says the disk is full. */
  #explain(err: unknown): unknown {
    if (this.#diskFull && String((err as { code?: string }).code).startsWith('SQLITE_READONLY')) return this.#diskFull;
    return explainStoreError(err, this.path);
  }

  setBusyTimeout(ms: number): void {
    this.db.pragma(`busy_timeout = ${ms}`);
  }

  get displayUrl(): string {
    return `sqlite:${this.path}`;
  }

  #prepare(sql: string): Database.Statement {
    let stmt = this.#statements.get(sql);
    if (!stmt) this.#statements.set(sql, (stmt = this.db.prepare(forSqlite(sql))));
    return stmt;
  }

  async all<T>(sql: string, params?: Params): Promise<T[]> {
    const stmt = this.#prepare(sql);
    return (params ? stmt.all(params) : stmt.all()) as T[];
  }

  async get<T>(sql: string, params?: Params): Promise<T | undefined> {
    const stmt = this.#prepare(sql);
    return (params ? stmt.get(params) : stmt.get()) as T | undefined;
  }

  async run(sql: string, params?: Params): Promise<number> {
    const stmt = this.#prepare(sql);
    try {
      return (params ? stmt.run(params) : stmt.run()).changes;
    } catch (err) {
      throw this.#explain(err);
    }
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#inTransaction.getStore()) return fn();
    // One connection per process: this process's writers take turns.
    const turn = this.#writers.then(() =>
      this.#inTransaction.run(true, async () => {
        // Taken up front, so it never fails half-way on a lock upgrade.
        try {
          this.db.exec('BEGIN IMMEDIATE');
        } catch (err) {
          throw this.#explain(err);
        }
        try {
          const result = await fn();
          this.db.exec('COMMIT');
          return result;
        } catch (err) {
          if (this.db.inTransaction) this.db.exec('ROLLBACK');
          throw this.#explain(err);
        }
      }),
    );
    this.#writers = turn.catch(() => undefined);
    return turn;
  }

  async schemaVersion(): Promise<number> {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /**
   * Applies every migration newer than `PRAGMA user_version`, each in its own IMMEDIATE
   * transaction that re-reads the version first, so two processes opening a fresh store at
   * once apply each migration exactly once. Returns whether any was applied.
   */
  migrateSync(migrations: Migration[] = loadMigrations(migrationsDir('sqlite'))): boolean {
    return migrateDb(this.db, this.path, migrations);
  }

  async migrate(): Promise<boolean> {
    return this.migrateSync();
  }

  #seenVersion = -1;

  /** `PRAGMA data_version` moves whenever another connection commits (one read of the WAL index). */
  changed(): boolean {
    const now = this.db.pragma('data_version', { simple: true }) as number;
    if (now === this.#seenVersion) return false;
    this.#seenVersion = now;
    return true;
  }

  /**
   * `onChange` when another connection committed: `data_version` is read when the WAL file is
   * written (inotify, through fs.watch on the database's directory: a commit elsewhere reaches
   * this process in milliseconds, as a NOTIFY does on PostgreSQL) and every `pollMs` (for
   * filesystems without inotify, and a WAL file that was not there yet). A commit's last WAL
   * write lands a moment before the WAL index shows it, so a wake reads again WAKE_AGAIN_MS
   * later if it saw nothing; wakes read at most once per WAKE_GAP_MS, so a burst of commits
   * costs a few reloads, not one each.
   */
  async watch(onChange: () => void, options: { pollMs?: number } = {}): Promise<() => Promise<void>> {
    this.changed();
    const check = (): boolean => {
      let changed = true;
      try {
        changed = this.changed();
      } catch {
        // A store that cannot be read right now: the reload says so (and keeps the last view), never a crash in a timer.
      }
      if (changed) onChange();
      return changed;
    };
    const timer = setInterval(check, options.pollMs ?? 250).unref();
    let wake: NodeJS.Timeout | undefined;
    let again: NodeJS.Timeout | undefined;
    let lastWake = 0;
    let watcher: FSWatcher | undefined;
    const wal = `${basename(this.path)}-wal`;
    try {
      watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        if (file !== wal || wake) return;
        wake = setTimeout(
          () => {
            wake = undefined;
            lastWake = Date.now();
            clearTimeout(again);
            if (!check()) again = setTimeout(check, WAKE_AGAIN_MS).unref();
          },
          Math.max(0, lastWake + WAKE_GAP_MS - Date.now()),
        ).unref();
      });
      watcher.on('error', () => watcher?.close());
    } catch {
      // No inotify here (or no such directory any more): the poll alone.
    }
    return async () => {
      clearInterval(timer);
      clearTimeout(wake);
      clearTimeout(again);
      watcher?.close();
    };
  }

  async close(): Promise<void> {
    this.db.close();
    if (this.#snapshot) {
      this.#snapshot.dispose();
      process.off('exit', this.#snapshot.dispose);
    }
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
    const driver = new Database(tmp);
    try {
      driver.pragma('journal_mode = WAL');
      migrateDb(driver, tmp);
      driver.prepare('INSERT OR IGNORE INTO account (id, account_tag) VALUES (1, ?)').run(randomBytes(16).toString('hex'));
    } finally {
      driver.close(); // checkpoints: everything is in the file itself
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

export function migrateDb(db: Database.Database, path: string, migrations: Migration[] = loadMigrations(migrationsDir('sqlite'))): boolean {
  const latest = migrations.length;
  const current = () => db.pragma('user_version', { simple: true }) as number;
  const before = current();
  if (before > latest) throw storeTooNew(`sqlite:${path}`, before, latest);
  for (const m of migrations) {
    if (m.version <= current()) continue;
    db.transaction(() => {
      if (current() >= m.version) return;
      db.exec(m.sql());
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return current() !== before;
}
