/**
 * The store file as the operating system sees it: what to refuse before SQLite touches it
 * (an empty or unreadable file would otherwise silently become a fresh, empty store), how to
 * read a store on a read-only data directory, and SQLite's errors said in the user's terms
 * (a full disk is SQLITE_FULL, SQLITE_IOERR_SHMSIZE or an I/O error depending on which write
 * met it).
 */
import { accessSync, constants, copyFileSync, existsSync, mkdtempSync, readSync, openSync, closeSync, rmSync, statSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { OxyError } from '../core/errors.js';

const SQLITE_HEADER = 'SQLite format 3\0';

/** Refuses a store file that exists but is empty, unreadable or not SQLite (a missing one is created). */
export function checkStoreFile(path: string): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw unreadable(path, err);
  }
  const wal = `${path}-wal`;
  if (size === 0 && !(existsSync(wal) && statSync(wal).size > 0)) {
    throw new OxyError(
      'OXY_ERR_STORE_UNREADABLE',
      `The store ${path} is empty (0 bytes): it holds no tunnels, routes or vnets. If it was truncated, restore it from a backup; to start with a new store, move it away.`,
    );
  }
  if (size === 0) return;
  const header = Buffer.alloc(SQLITE_HEADER.length);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw unreadable(path, err);
  }
  try {
    readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  if (header.toString('latin1') !== SQLITE_HEADER) {
    throw new OxyError(
      'OXY_ERR_STORE_UNREADABLE',
      `The store ${path} is not a SQLite database: restore it from a backup, or move it away to start with a new store.`,
    );
  }
}

const unreadable = (path: string, err: unknown) =>
  new OxyError(
    'OXY_ERR_STORE_UNREADABLE',
    `The store ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): check its owner and permissions.`,
    { cause: err },
  );

/** Whether the data directory cannot be written (a read-only mount, or no permission). */
export function isReadOnlyDir(home: string): boolean {
  try {
    accessSync(home, constants.W_OK);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EROFS' || code === 'EACCES' || code === 'EPERM';
  }
}

/**
 * A private copy of a store whose directory is read-only, for reading. SQLite cannot open a
 * WAL database where it cannot create the `-shm` index; the copy (with any `-wal` the last
 * writer left) opens normally. `dispose` removes it.
 */
export function readOnlySnapshot(path: string): { path: string; dispose: () => void } {
  if (!existsSync(path)) {
    throw new OxyError('OXY_ERR_STORE_READ_ONLY', `There is no store at ${path}, and ${dirname(path)} is read-only: nothing to read, and none can be created.`);
  }
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), 'oxyctl-ro-'));
  } catch (err) {
    throw new OxyError(
      'OXY_ERR_STORE_READ_ONLY',
      `${dirname(path)} is read-only, and no temporary copy of the store can be made in ${tmpdir()}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const copy = join(dir, 'oxy.db');
  const dispose = () => rmSync(dir, { recursive: true, force: true });
  try {
    copyFileSync(path, copy);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
  } catch (err) {
    dispose();
    throw err;
  }
  return { path: copy, dispose };
}

/** Whether the filesystem holding `dir` has no space left for us. */
function diskFull(dir: string): boolean {
  try {
    return statfsSync(dir).bavail === 0;
  } catch {
    return false;
  }
}

/**
 * SQLite's and the file system's errors on the store, said in the user's terms (a stable
 * code, what happened, what to do); anything else is returned as it was.
 */
export function explainStoreError(err: unknown, path: string): unknown {
  if (err instanceof OxyError) return err;
  const code = (err as { code?: string }).code ?? '';
  const dir = dirname(path);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || ((code.startsWith('SQLITE_IOERR') || code === 'SQLITE_CANTOPEN') && diskFull(dir))) {
    return new OxyError('OXY_ERR_STORE_DISK_FULL', `The disk holding ${dir} is full: free some space and retry (the store was not changed).`, { cause: err });
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new OxyError(
      'OXY_ERR_STORE_BUSY',
      `The store ${path} is locked by another process (a long transaction, or a sqlite3 shell holding it): retry once it is released (nothing was changed).`,
      { cause: err },
    );
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'EROFS') {
    return new OxyError(
      'OXY_ERR_STORE_READ_ONLY',
      `The store in ${dir} is read-only: this command changes it. Run it where the data directory can be written.`,
      { cause: err },
    );
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new OxyError('OXY_ERR_STORE_UNREADABLE', `The store ${path} is damaged (${(err as Error).message}): restore it from a backup.`, { cause: err });
  }
  if (code === 'SQLITE_CANTOPEN' || code === 'EACCES' || code === 'EPERM') {
    return new OxyError(
      'OXY_ERR_STORE_UNREADABLE',
      `The store ${path} cannot be opened (${(err as Error).message}): check the data directory's owner and permissions.`,
      { cause: err },
    );
  }
  return err;
}
