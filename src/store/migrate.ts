import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../core/paths.js';
import type Database from 'better-sqlite3';
import { OxyError } from '../core/errors.js';

/** Shipped at the package root, beside dist/, lib/ and src/. */
export const MIGRATIONS_DIR = join(packageRoot(), 'migrations');

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

/**
 * Applies every migration newer than `PRAGMA user_version`, each in its own IMMEDIATE
 * transaction that re-reads the version first, so two processes opening a fresh store at
 * once apply each migration exactly once.
 */
/** Returns whether any migration was applied. */
export function migrate(db: Database.Database, migrations = loadMigrations()): boolean {
  const latest = migrations.length;
  const current = () => db.pragma('user_version', { simple: true }) as number;
  const before = current();
  if (before > latest) {
    throw new OxyError(
      'OXY_ERR_STORE_TOO_NEW',
      `The store ${db.name} has schema version ${before}, but this oxyctl only knows versions up to ${latest}. ` +
        'Upgrade oxyctl, or point --home / OXY_HOME at another data directory.',
    );
  }
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
