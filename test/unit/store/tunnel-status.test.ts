/**
 * The dashboard's tunnel status over a real store: down without connections, healthy with
 * all of a connector's connections, degraded when one of them is gone (it had more, or its
 * highest index says so), and a connector that left entirely starts afresh.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createDashboardToken, tunnelOverview, verifyDashboardToken } from '../../../src/core/dashboard.js';
import { createTunnel } from '../../../src/core/tunnels.js';
import { openTestStore, tempHome } from '../../helpers/cli.js';

describe('dashboard tunnel status', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });
  const open = async () => {
    const { home, cleanup } = tempHome();
    const store = await openTestStore(home);
    cleanups.push(async () => (await store.close(), cleanup()));
    return store;
  };
  const conn = (tunnelId: string, connectorId: string, connIndex: number) => ({
    id: `${connectorId}-${connIndex}`,
    tunnelId,
    connectorId,
    connIndex,
    protocol: 'quic',
    originIp: '198.18.0.9',
    edgeLocation: 'local',
    clientVersion: '0.1.0',
    arch: 'linux_amd64',
    openedAt: new Date(Date.now() - 65_000).toISOString().replace(/\.\d+Z$/, 'Z'),
  });

  it('moves between down, healthy and degraded as connections come and go', async () => {
    const store = await open();
    const { tunnel } = await createTunnel(store, { name: 'web' });
    const seen = new Map<string, number>();
    const status = async () => (await tunnelOverview(store, seen))[0];
    expect((await status()).status).toBe('down');
    for (const i of [0, 1, 2, 3]) await store.tunnels.recordConnection(conn(tunnel.id, 'a', i));
    expect(await status()).toMatchObject({
      status: 'healthy',
      connections: expect.arrayContaining([expect.objectContaining({ protocol: 'quic', edge: 'local', origin_ip: '198.18.0.9' })]),
    });
    expect((await status()).connections[0].uptime_seconds).toBeGreaterThanOrEqual(65);
    await store.tunnels.forgetConnection('a-1');
    expect((await status()).status).toBe('degraded');
    // A fresh view of the store still sees the gap below index 3.
    expect((await tunnelOverview(store))[0].status).toBe('degraded');
    await store.tunnels.forgetConnection('a-3');
    expect((await status()).status).toBe('degraded');
    await store.tunnels.recordConnection(conn(tunnel.id, 'a', 1));
    await store.tunnels.recordConnection(conn(tunnel.id, 'a', 3));
    expect((await status()).status).toBe('healthy');
    for (const i of [0, 1, 2, 3]) await store.tunnels.forgetConnection(`a-${i}`);
    expect((await status()).status).toBe('down');
    // The connector left: coming back with one connection is healthy again.
    await store.tunnels.recordConnection(conn(tunnel.id, 'a', 0));
    expect((await status()).status).toBe('healthy');
  });

  it('keeps only a hash of the dashboard token, and a new token replaces the old', async () => {
    const store = await open();
    const first = await createDashboardToken(store);
    const rows = await store.driver.all<{ token_hash: string }>('SELECT token_hash FROM dashboard_tokens');
    expect(rows).toHaveLength(1);
    expect(rows[0].token_hash).not.toContain(first.slice(5));
    expect(await verifyDashboardToken(store, first)).toBe(rows[0].token_hash);
    const second = await createDashboardToken(store);
    expect(await verifyDashboardToken(store, first)).toBeUndefined();
    expect(await verifyDashboardToken(store, second)).toBeDefined();
    expect(await verifyDashboardToken(store, 'oxyd_guess')).toBeUndefined();
  });
});
