/**
 * The store on this leg's backend (SQLite, or PostgreSQL on the `postgres` project): migrations,
 * the schema's own rules, and what differs per backend (pragmas, query plans, URLs).
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadMigrations, MIGRATIONS_DIR, migrationsDir } from '../../../src/store/migrate.js';
import { isUniqueViolation, Store } from '../../../src/store/index.js';
import Database from 'better-sqlite3';
import { migrateDb, SqliteDriver } from '../../../src/store/sqlite.js';
import { COPY_TABLES, schemaTables } from '../../../src/store/copy.js';
import { PostgresDriver } from '../../../src/store/postgres.js';
import { addRoute, networkRange, parseNetworkArg } from '../../../src/core/routes.js';
import { createTunnel } from '../../../src/core/tunnels.js';
import { addVnet, listVnets } from '../../../src/core/vnets.js';
import { openTestStore, storeUrl, tempHome, testBackend } from '../../helpers/cli.js';
import { sharedPostgres } from '../../helpers/postgres.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ home: dir, cleanup } = tempHome()));
afterEach(() => cleanup());

const sqlite = testBackend === 'sqlite';

describe(`store (${testBackend})`, () => {
  it('SQLite and PostgreSQL migrations are twins: same numbers, same names', () => {
    const names = (d: string) => loadMigrations(d).map((m) => `${m.version}_${m.name}`);
    expect(names(migrationsDir('postgres'))).toEqual(names(MIGRATIONS_DIR));
    expect(readdirSync(migrationsDir('postgres')).filter((f) => f.endsWith('.sql')).length).toBe(loadMigrations().length);
  });

  it('store copy knows every table of the schema (a new table must be added to COPY_TABLES)', async () => {
    const store = await openTestStore(dir);
    expect(await schemaTables(store.driver)).toEqual([...COPY_TABLES].sort());
    await store.close();
  });

  it('applies every migration once, with one schema version; opening again changes nothing', async () => {
    const store = await openTestStore(dir);
    expect(await store.driver.schemaVersion()).toBe(loadMigrations().length);
    expect(await store.driver.migrate()).toBe(false);
    const tag = store.accountTag;
    expect(tag).toMatch(/^[0-9a-f]{32}$/);
    await store.close();
    const again = await openTestStore(dir);
    expect(again.accountTag).toBe(tag);
    await again.close();
  });

  it.runIf(sqlite)('SQLite: WAL, foreign keys and a busy timeout are on', async () => {
    const store = await openTestStore(dir);
    const db = (store.driver as SqliteDriver).db;
    expect(db.pragma('user_version', { simple: true })).toBe(loadMigrations().length);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBeGreaterThan(0);
    await store.close();
  });

  it('processes opening a fresh store at once migrate it once and share one account', async () => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => openTestStore(dir)));
    expect(new Set(stores.map((s) => s.accountTag)).size).toBe(1);
    await Promise.all(stores.map((s) => s.close()));
  });

  it('refuses a store written by a newer oxyctl, with a clear error', async () => {
    const store = await openTestStore(dir);
    await store.driver.run(sqlite ? 'PRAGMA user_version = 999' : 'UPDATE oxy_schema SET version = 999');
    await store.close();
    await expect(openTestStore(dir)).rejects.toMatchObject({
      code: 'OXY_ERR_STORE_TOO_NEW',
      message: expect.stringMatching(/schema version 999, but this oxyctl only knows versions up to \d+\. Upgrade oxyctl/),
    });
  });

  it('rolls a failing migration back whole', async () => {
    const migrations = join(dir, 'migrations');
    mkdirSync(migrations);
    writeFileSync(join(migrations, '0001_ok.sql'), 'CREATE TABLE a (x INTEGER);');
    writeFileSync(join(migrations, '0002_bad.sql'), 'CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);');
    const custom = loadMigrations(migrations);
    if (sqlite) {
      const db = new Database(join(dir, 'x.db'));
      expect(() => migrateDb(db, join(dir, 'x.db'), custom)).toThrow(/no such table: nope/);
      expect(db.pragma('user_version', { simple: true })).toBe(1);
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'b'").get()).toEqual({ n: 0 });
      db.close();
      return;
    }
    const driver = new PostgresDriver(storeUrl(dir));
    await expect(driver.migrate(custom)).rejects.toThrow(/relation "nope" does not exist/);
    expect(await driver.schemaVersion()).toBe(1);
    expect(await driver.get("SELECT CAST(count(*) AS INTEGER) AS n FROM pg_tables WHERE tablename = 'b'")).toEqual({ n: 0 });
    await driver.close();
  });

  it('enforces the uniqueness rules in the schema itself (what racing writers meet)', async () => {
    const store = await openTestStore(dir);
    const a = await addVnet(store, { name: 'a' });
    await addVnet(store, { name: 'b' });
    const { tunnel } = await createTunnel(store, { name: 't' });
    await addRoute(store, { network: '10.1.0.0/16', tunnel: 't', vnet: 'a' });
    const range = networkRange(parseNetworkArg('10.1.0.0/16'));
    // Bypassing the use-case checks, as a racing writer would.
    const dup = store.routes.insert(
      { id: crypto.randomUUID(), vnetId: a.id, tunnelId: tunnel.id, network: '10.1.0.0/16', comment: '', createdAt: 'now' },
      range,
    );
    await expect(
      dup.then(
        () => 'inserted',
        (err) => isUniqueViolation(err),
      ),
    ).resolves.toBe(true);
    await expect(
      store.driver.run('UPDATE vnets SET is_default = 1').then(
        () => 'updated',
        (err) => isUniqueViolation(err),
      ),
    ).resolves.toBe(true);
    await store.close();
  });

  it('a failed write transaction leaves nothing behind', async () => {
    const store = await openTestStore(dir);
    await expect(
      store.write(async () => {
        await store.vnets.insert({ id: crypto.randomUUID(), name: 'half', comment: '', isDefault: false, createdAt: 'now' });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await listVnets(store, {})).toEqual([]);
    await store.close();
  });

  it('keeps insertion order for rows created in the same second', async () => {
    const store = await openTestStore(dir);
    const names = ['m', 'z', 'a', 'q'];
    for (const name of names) await addVnet(store, { name });
    expect((await listVnets(store, {})).map((v) => v.name)).toEqual(names);
    await store.close();
  });

  it.runIf(sqlite)('SQLite: answers the per-flow lookups from indexes', async () => {
    const store = await openTestStore(dir);
    const db = (store.driver as SqliteDriver).db;
    const plan = (sql: string) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail).join('; ');
    expect(
      plan(`SELECT * FROM routes WHERE vnet_id = 'v' AND family = 4 AND range_start <= x'0a010203'
            AND deleted_at IS NULL ORDER BY range_start DESC`),
    ).toMatch(/USING INDEX routes_lookup/);
    expect(plan("SELECT * FROM routes WHERE vnet_id = 'v' AND network = '10.1.0.0/16' AND deleted_at IS NULL")).toMatch(/USING INDEX routes_live_network/);
    expect(plan("SELECT * FROM hostnames WHERE hostname = 'a.example.com' AND deleted_at IS NULL")).toMatch(/USING INDEX hostnames_live/);
    expect(plan("SELECT * FROM tunnels WHERE name = 't' AND deleted_at IS NULL")).toMatch(/USING INDEX tunnels_live_name/);
    await store.close();
  });

  it.runIf(!sqlite)('PostgreSQL: reachable over TCP on loopback too; a wrong URL is a clear error without the password', async () => {
    const pg = sharedPostgres()!;
    const db = /@\/([^?]+)/.exec(storeUrl(dir))![1];
    const store = await Store.open({ home: dir, url: pg.tcpUrl(db) });
    expect(store.dialect).toBe('postgres');
    await store.close();
    await expect(Store.open({ home: dir, url: `postgres://someone:hunter2@127.0.0.1:1/${db}` })).rejects.toMatchObject({
      code: 'OXY_ERR_STORE_UNREACHABLE',
      message: expect.not.stringContaining('hunter2'),
    });
  });

  it('names a bad store URL and what to use instead', async () => {
    await expect(Store.open({ home: dir, url: 'mysql://x/y' })).rejects.toMatchObject({
      code: 'OXY_ERR_STORE_URL',
      message: 'mysql://x/y is not a store URL. Use sqlite:PATH (the default is sqlite:$OXY_HOME/oxy.db) or postgres://USER@HOST/DB.',
    });
  });
});
