/**
 * Copies one store into another (`oxyctl store copy sqlite:A postgres://B`): every table,
 * every row, ids and timestamps as they are, in insertion order, in one transaction on the
 * destination. The destination must be empty; both are at the latest schema version.
 */
import { OxyError } from '../core/errors.js';
import type { Driver } from './sql.js';

/**
 * Every table of the schema, parents before children (foreign keys). A migration that adds
 * a table adds it here too (test/unit/store/copy.test.ts fails until it does).
 */
export const COPY_TABLES = [
  'account',
  'vnets',
  'tunnels',
  'devices',
  'device_vnets',
  'edges',
  'tunnel_connections',
  'routes',
  'hostnames',
  'dashboard_tokens',
] as const;

/** Tables the copy leaves alone: the backends' own bookkeeping. */
const INTERNAL = new Set(['oxy_schema']);

export async function schemaTables(driver: Driver): Promise<string[]> {
  const rows =
    driver.dialect === 'sqlite'
      ? await driver.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      : await driver.all<{ name: string }>('SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename');
  return rows.map((r) => r.name).filter((n) => !INTERNAL.has(n));
}

async function columns(driver: Driver, table: string): Promise<string[]> {
  const rows =
    driver.dialect === 'sqlite'
      ? await driver.all<{ name: string }>(`SELECT name FROM pragma_table_info('${table}') ORDER BY cid`)
      : await driver.all<{ name: string }>(
          'SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = @table ORDER BY ordinal_position',
          { table },
        );
  return rows.map((r) => r.name);
}

/** The order rows were inserted in (SQLite's rowid; PostgreSQL's seq where a table has one; else the columns). */
async function orderOf(driver: Driver, table: string): Promise<string> {
  const cols = await columns(driver, table);
  if (driver.dialect === 'sqlite') {
    const def = await driver.get<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = @table", { table });
    if (!/WITHOUT ROWID/i.test(def?.sql ?? '')) return 'rowid';
  } else if (cols.includes('seq')) return 'seq';
  return cols.includes('id') ? 'id' : cols.join(', ');
}

export type CopyCounts = Record<(typeof COPY_TABLES)[number], number>;

export async function copyStore(from: Driver, to: Driver, onTable?: (table: string, rows: number) => void): Promise<CopyCounts> {
  const unknown = (await schemaTables(from)).filter((t) => !(COPY_TABLES as readonly string[]).includes(t));
  if (unknown.length) throw new Error(`store copy does not know the table(s) ${unknown.join(', ')}: add them to COPY_TABLES`);
  const counts = {} as CopyCounts;
  await to.transaction(async () => {
    for (const table of COPY_TABLES) {
      if (table === 'account') continue;
      const n = await to.get<{ n: number }>(`SELECT CAST(count(*) AS INTEGER) AS n FROM ${table}`);
      if (n!.n > 0) {
        throw new OxyError(
          'OXY_ERR_STORE_NOT_EMPTY',
          `The destination store ${to.displayUrl} already holds ${table}. Copy into a new, empty store (its account would be replaced).`,
        );
      }
    }
    for (const table of COPY_TABLES) {
      // The columns both sides have, without the backend's own ordering column.
      const target = new Set(await columns(to, table));
      const cols = (await columns(from, table)).filter((c) => c !== 'seq' && target.has(c));
      const rows = await from.all<Record<string, string | number | Buffer | null>>(
        `SELECT ${cols.join(', ')} FROM ${table} ORDER BY ${await orderOf(from, table)}`,
      );
      if (table === 'account') await to.run('DELETE FROM account');
      const insert = `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`;
      for (const row of rows) await to.run(insert, row);
      counts[table] = rows.length;
      onTable?.(table, rows.length);
    }
  });
  return counts;
}
