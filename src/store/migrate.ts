import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../core/paths.js';
import { OxyError } from '../core/errors.js';
import type { Dialect } from './sql.js';

/**
 * Shipped at the package root, beside dist/, lib/ and src/: SQLite's in migrations/,
 * PostgreSQL's twins (same numbers, same names, one schema version) in migrations/postgres/.
 */
export const MIGRATIONS_DIR = join(packageRoot(), 'migrations');

export const migrationsDir = (dialect: Dialect): string => (dialect === 'sqlite' ? MIGRATIONS_DIR : join(MIGRATIONS_DIR, 'postgres'));

export interface Migration {
  version: number;
  name: string;
  /** Read only when the migration is applied: most opens find the store current. */
  sql: () => string;
}

/** `NNNN_name.sql`, in order; a gap or a duplicate number is a packaging bug. */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f))
    .sort()
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file.slice(5, -4),
      sql: () => readFileSync(`${dir}/${file}`, 'utf8'),
    }));
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${m.version}_${m.name} is out of sequence (expected ${i + 1})`);
  });
  return migrations;
}

export function storeTooNew(displayUrl: string, version: number, latest: number): OxyError {
  return new OxyError(
    'OXY_ERR_STORE_TOO_NEW',
    `The store ${displayUrl} has schema version ${version}, but this oxyctl only knows versions up to ${latest}. ` +
      'Upgrade oxyctl, or point --store / OXY_STORE (or --home / OXY_HOME) at another store.',
  );
}
