import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyJson, oxyOk, storeUrl, tempHome } from '../helpers/cli.js';

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

describe('racing writers', () => {
  it('8 processes adding routes at once lose no row and never show SQLITE_BUSY', async () => {
    await oxyOk(home, ['tunnel', 'create', 't']);
    // Each process adds its own network; two of them also race for one shared network.
    const runs = await Promise.all([
      ...Array.from({ length: 8 }, (_, i) => oxy(home, ['tunnel', 'route', 'ip', 'add', `10.${i}.0.0/16`, 't'])),
      oxy(home, ['tunnel', 'route', 'ip', 'add', '10.99.0.0/16', 't']),
      oxy(home, ['tunnel', 'route', 'ip', 'add', '10.99.0.0/16', 't']),
    ]);
    for (const r of runs) expect(r.stderr).not.toMatch(/SQLITE|database is locked/i);
    expect(runs.slice(0, 8).every((r) => r.code === 0)).toBe(true);
    const shared = runs.slice(8);
    expect(shared.filter((r) => r.code === 0)).toHaveLength(1);
    expect(shared.find((r) => r.code !== 0)?.stderr).toContain('code: 1014');

    const routes = await oxyJson<{ network: string }[]>(home, ['tunnel', 'route', 'ip', 'show']);
    expect(routes.map((r) => r.network).sort()).toEqual([...Array.from({ length: 8 }, (_, i) => `10.${i}.0.0/16`), '10.99.0.0/16'].sort());
  });

  it('processes racing to create the first vnets on a fresh store leave exactly one default', async () => {
    const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => oxy(home, ['vnet', 'add', `v${i}`])));
    expect(runs.map((r) => r.code)).toEqual(Array(8).fill(0));
    const vnets = await oxyJson<{ is_default_network: boolean }[]>(home, ['vnet', 'list']);
    expect(vnets).toHaveLength(8);
    expect(vnets.filter((v) => v.is_default_network)).toHaveLength(1);
  });

  it("two hosts' CLIs (8 processes, two data directories on one store) race: nothing lost, 1014 and 1013 exact", async () => {
    // The second host: its own data directory (credentials files), the same store URL.
    const other = tempHome();
    const env = { OXY_STORE: storeUrl(home) };
    try {
      await oxyOk(home, ['tunnel', 'create', 't'], env);
      const host = (i: number) => (i % 2 === 0 ? home : other.home);
      const runs = await Promise.all([
        ...Array.from({ length: 4 }, (_, i) => oxy(host(i), ['tunnel', 'route', 'ip', 'add', `10.${i}.0.0/16`, 't'], env)),
        ...Array.from({ length: 2 }, (_, i) => oxy(host(i), ['tunnel', 'route', 'ip', 'add', '10.99.0.0/16', 't'], env)),
        ...Array.from({ length: 2 }, (_, i) => oxy(host(i), ['tunnel', 'create', 'same-name'], env)),
      ]);
      expect(runs.slice(0, 4).map((r) => r.code)).toEqual([0, 0, 0, 0]);
      const [route1, route2, create1, create2] = runs.slice(4);
      expect([route1, route2].filter((r) => r.code === 0)).toHaveLength(1);
      expect([route1, route2].find((r) => r.code !== 0)?.stderr).toContain('code: 1014');
      expect([create1, create2].filter((r) => r.code === 0)).toHaveLength(1);
      expect([create1, create2].find((r) => r.code !== 0)?.stderr).toContain('tunnel with name already exists');
      // Both hosts read the same rows.
      for (const h of [home, other.home]) {
        const routes = JSON.parse(await oxyOk(h, ['tunnel', 'route', 'ip', 'show', '-o', 'json'], env)) as { network: string }[];
        expect(routes.map((r) => r.network).sort()).toEqual(['10.0.0.0/16', '10.1.0.0/16', '10.2.0.0/16', '10.3.0.0/16', '10.99.0.0/16']);
        const tunnels = JSON.parse(await oxyOk(h, ['tunnel', 'list', '-o', 'json'], env)) as { name: string }[];
        expect(tunnels.map((t) => t.name).sort()).toEqual(['same-name', 't']);
      }
    } finally {
      other.cleanup();
    }
  });
});
