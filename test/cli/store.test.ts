/**
 * `oxyctl store migrate` and `oxyctl store copy`: a single-host SQLite setup moves to this
 * leg's backend (PostgreSQL on the `postgres` project) with nothing lost.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyJson, oxyOk, storeUrl, tempHome, testBackend } from '../helpers/cli.js';
import { loadMigrations } from '../../src/store/migrate.js';

let home: string;
let cleanup: () => void;
let src: { home: string; cleanup: () => void };
beforeEach(() => {
  ({ home, cleanup } = tempHome());
  src = tempHome();
});
afterEach(() => {
  cleanup();
  src.cleanup();
});

const latest = loadMigrations().length;

describe('oxyctl store', () => {
  it('migrate reports the schema version, then that it is up to date', async () => {
    const first = JSON.parse(await oxyOk(home, ['store', 'migrate', '-o', 'json'])) as { from: number; version: number; applied: number };
    // A new SQLite store is created whole (migrated in a temporary file linked into place).
    const from = testBackend === 'postgres' ? 0 : latest;
    expect(first).toMatchObject({ from, version: latest, applied: latest - from });
    expect(await oxyOk(home, ['store', 'migrate'])).toMatch(new RegExp(`^Store .* is up to date at schema version ${latest}\\n$`));
  });

  it(`copy moves a SQLite store to ${testBackend} with the same counts, ids and listings`, async () => {
    const sqlite = `sqlite:${join(src.home, 'oxy.db')}`;
    const inSrc = (args: string[]) => oxyOk(src.home, args, { OXY_STORE: sqlite });
    await inSrc(['vnet', 'add', '--default', 'vnet-fra', 'Frankfurt']);
    await inSrc(['vnet', 'add', 'vnet-syd']);
    await inSrc(['vnet', 'add', 'gone']);
    await inSrc(['vnet', 'delete', '--yes', 'gone']);
    for (const t of ['t1', 't2', 'old']) await inSrc(['tunnel', 'create', t]);
    await inSrc(['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-fra', '10.1.0.0/16', 't1', 'office']);
    await inSrc(['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-syd', '10.1.0.0/16', 't2']);
    await inSrc(['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-syd', '2001:db8::/48', 't2']);
    await inSrc(['tunnel', 'route', 'ip', 'add', '10.9.0.0/16', 't1']);
    await inSrc(['tunnel', 'route', 'ip', 'delete', '--yes', '10.9.0.0/16']);
    await inSrc(['tunnel', 'route', 'dns', 't1', 'app.example.com']);
    await inSrc(['tunnel', 'delete', '--yes', 'old']);
    await inSrc(['warp', 'enroll', '--vnet', 'vnet-syd', 'laptop']);
    await inSrc(['warp', 'enroll', 'phone']);
    await inSrc(['warp', 'revoke', '--yes', 'phone']);
    await inSrc(['edge', 'dashboard-token']);

    const dest = testBackend === 'postgres' ? storeUrl(home) : `sqlite:${join(home, 'copy.db')}`;
    const copied = JSON.parse(await oxyOk(home, ['store', 'copy', sqlite, dest, '-o', 'json'])) as { rows: Record<string, number>; accountTag: string };
    expect(copied.rows).toEqual({
      account: 1,
      vnets: 3,
      tunnels: 3,
      devices: 2,
      tunnel_connections: 0,
      routes: 4,
      hostnames: 1,
      dashboard_tokens: 1,
      device_vnets: 1,
      edges: 0,
    });

    const listings = [
      ['vnet', 'list', '--show-deleted'],
      ['tunnel', 'list', '--show-deleted'],
      ['tunnel', 'route', 'ip', 'show'],
      ['tunnel', 'route', 'ip', 'show', '--filter-is-deleted'],
      ['warp', 'devices', '--show-deleted'],
      ['tunnel', 'token', 't1'],
    ];
    // Read-only listings: all at once (33 CLI runs one after another passed 120 s at load 24).
    const read = (at: string, store: string, args: string[]) => oxy(at, [...args, ...(args[1] === 'token' ? [] : ['-o', 'json'])], { OXY_STORE: store });
    const pairs = await Promise.all(listings.map((args) => Promise.all([read(src.home, sqlite, args), read(home, dest, args)])));
    for (const [i, [before, after]] of pairs.entries()) expect(after, listings[i]!.join(' ')).toEqual(before);
    // The copy is a working store: the same rules hold there.
    const again = await oxy(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-fra', '10.1.0.0/16', 't1'], { OXY_STORE: dest });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('code: 1014');
    expect((await oxyJson<unknown[]>(home, ['vnet', 'list'])).length).toBe(testBackend === 'postgres' ? 2 : 0);
  }, 240_000);

  it('copy refuses a destination that already holds data, and changes nothing', async () => {
    const sqlite = `sqlite:${join(src.home, 'oxy.db')}`;
    await oxyOk(src.home, ['vnet', 'add', 'a'], { OXY_STORE: sqlite });
    const dest = testBackend === 'postgres' ? storeUrl(home) : `sqlite:${join(home, 'copy.db')}`;
    await oxyOk(home, ['vnet', 'add', 'mine'], { OXY_STORE: dest });
    const r = await oxy(home, ['store', 'copy', sqlite, dest]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^The destination store .* already holds vnets\. Copy into a new, empty store/);
    expect((await oxyJson<{ name: string }[]>(home, ['vnet', 'list'])).map((v) => v.name)).toEqual(testBackend === 'postgres' ? ['mine'] : []);
  });
});
