import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadMigrations, migrate } from '../../../src/store/migrate.js';
import { openDb } from '../../../src/store/db.js';
import { Store } from '../../../src/store/index.js';
import { addRoute, networkRange, parseNetworkArg } from '../../../src/core/routes.js';
import { createTunnel } from '../../../src/core/tunnels.js';
import { addVnet } from '../../../src/core/vnets.js';

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'oxy-store-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('store migrations', () => {
  it('applies every migration once, tracked by user_version, with WAL and foreign keys on', () => {
    const db = openDb(dir);
    expect(db.pragma('user_version', { simple: true })).toBe(loadMigrations().length);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBeGreaterThan(0);
    migrate(db); // idempotent
    db.close();
    openDb(dir).close();
  });

  it('refuses a store written by a newer oxyctl, with a clear error', () => {
    const db = openDb(dir);
    db.pragma('user_version = 999');
    db.close();
    expect(() => openDb(dir)).toThrow(/schema version 999, but this oxyctl only knows versions up to \d+\. Upgrade oxyctl/);
  });

  it('rolls a failing migration back whole', () => {
    const migrations = join(dir, 'migrations');
    mkdirSync(migrations);
    writeFileSync(join(migrations, '0001_ok.sql'), 'CREATE TABLE a (x);');
    writeFileSync(join(migrations, '0002_bad.sql'), 'CREATE TABLE b (x); INSERT INTO nope VALUES (1);');
    const db = new Database(join(dir, 'x.db'));
    expect(() => migrate(db, loadMigrations(migrations))).toThrow(/no such table: nope/);
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'b'").get()).toEqual({ n: 0 });
    db.close();
  });

  it('enforces the uniqueness rules in the schema itself', () => {
    const store = Store.open(dir);
    const a = addVnet(store, { name: 'a' });
    addVnet(store, { name: 'b' });
    const { tunnel } = createTunnel(store, { name: 't' });
    addRoute(store, { network: '10.1.0.0/16', tunnel: 't', vnet: 'a' });
    const range = networkRange(parseNetworkArg('10.1.0.0/16'));
    // Bypassing the use-case checks, as a racing writer would.
    expect(() =>
      store.routes.insert(
        { id: crypto.randomUUID(), vnetId: a.id, tunnelId: tunnel.id, network: '10.1.0.0/16', comment: '', createdAt: 'now' },
        range,
      ),
    ).toThrow(/UNIQUE/);
    expect(() => store.db.prepare('UPDATE vnets SET is_default = 1').run()).toThrow(/UNIQUE/);
    store.close();
  });

  it('answers the per-flow lookups from indexes', () => {
    const db = openDb(dir);
    const plan = (sql: string) =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail).join('; ');
    expect(
      plan(`SELECT * FROM routes WHERE vnet_id = 'v' AND family = 4 AND range_start <= x'0a010203'
            AND deleted_at IS NULL ORDER BY range_start DESC`),
    ).toMatch(/USING INDEX routes_lookup/);
    expect(plan("SELECT * FROM routes WHERE vnet_id = 'v' AND network = '10.1.0.0/16' AND deleted_at IS NULL")).toMatch(
      /USING INDEX routes_live_network/,
    );
    expect(plan("SELECT * FROM hostnames WHERE hostname = 'a.example.com' AND deleted_at IS NULL")).toMatch(/USING INDEX hostnames_live/);
    expect(plan("SELECT * FROM tunnels WHERE name = 't' AND deleted_at IS NULL")).toMatch(/USING INDEX tunnels_live_name/);
    db.close();
  });
});
