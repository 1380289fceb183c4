/**
 * The edge registry on this leg's backend: live edges are those with a fresh heartbeat, a
 * dead edge's connections drop out of the tunnel's connections, rows written without an edge
 * id stay shown, and an edge dead for long is forgotten with its connections.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createTunnel } from '../../../src/core/tunnels.js';
import { EDGE_TTL_MS } from '../../../src/store/edges.js';
import type { Store } from '../../../src/store/index.js';
import { openTestStore, tempHome } from '../../helpers/cli.js';

let home: string;
let cleanup: () => void;
let store: Store;
beforeEach(async () => {
  ({ home, cleanup } = tempHome());
  store = await openTestStore(home);
});
afterEach(async () => {
  await store.close();
  cleanup();
});

const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

it('lists live edges only, hides a dead edge’s connections, and prunes edges dead for long', async () => {
  const { tunnel } = await createTunnel(store, { name: 'web' });
  const conn = (id: string, edgeId: string | null) => ({
    id,
    tunnelId: tunnel.id,
    connectorId: 'c',
    connIndex: 0,
    protocol: 'quic',
    originIp: '198.18.0.1',
    edgeLocation: id,
    clientVersion: '',
    arch: '',
    openedAt: ago(0),
    edgeId,
  });
  await store.edges.record({ id: 'live', location: 'fra', tunnelAddress: '198.18.0.1:7844', startedAt: ago(60_000), heartbeatAt: ago(0) });
  await store.edges.record({ id: 'dead', location: 'lhr', tunnelAddress: '198.18.0.2:7844', startedAt: ago(7_200_000), heartbeatAt: ago(EDGE_TTL_MS + 1000) });
  await store.edges.record({ id: 'long-dead', location: 'syd', tunnelAddress: '198.18.0.3:7844', startedAt: ago(9_000_000), heartbeatAt: ago(7_200_000) });
  await store.tunnels.recordConnection(conn('on-live', 'live'));
  await store.tunnels.recordConnection(conn('on-dead', 'dead'));
  await store.tunnels.recordConnection(conn('on-long-dead', 'long-dead'));
  await store.tunnels.recordConnection(conn('no-edge', null));

  expect((await store.edges.live()).map((e) => [e.id, e.connections])).toEqual([['live', 1]]);
  expect((await store.tunnels.connections(tunnel.id)).map((c) => c.id).sort()).toEqual(['no-edge', 'on-live']);
  expect([...(await store.tunnels.connectionsByTunnel()).get(tunnel.id)!].map((c) => c.id).sort()).toEqual(['no-edge', 'on-live']);

  // A heartbeat brings a dead edge back, with its connections.
  await store.edges.record({ id: 'dead', location: 'lhr', tunnelAddress: '198.18.0.2:7844', startedAt: ago(7_200_000), heartbeatAt: ago(0) });
  expect((await store.tunnels.connections(tunnel.id)).map((c) => c.id).sort()).toEqual(['no-edge', 'on-dead', 'on-live']);

  expect(await store.edges.prune(ago(3_600_000))).toBe(1);
  const rows = await store.driver.all<{ id: string }>('SELECT id FROM tunnel_connections');
  expect(rows.map((r) => r.id).sort()).toEqual(['no-edge', 'on-dead', 'on-live']);
  expect((await store.driver.all<{ id: string }>('SELECT id FROM edges')).map((r) => r.id).sort()).toEqual(['dead', 'live']);
});

it('forgetting an earlier run at a location keeps the rows of a live edge there (two edges, or workers, share a location)', async () => {
  const { tunnel } = await createTunnel(store, { name: 'web' });
  const conn = (id: string, edgeId: string | null) => ({
    id,
    tunnelId: tunnel.id,
    connectorId: 'c',
    connIndex: 0,
    protocol: 'quic',
    originIp: '198.18.0.1',
    edgeLocation: 'fra',
    clientVersion: '',
    arch: '',
    openedAt: ago(0),
    edgeId,
  });
  await store.edges.record({ id: 'sibling', location: 'fra', tunnelAddress: '198.18.0.1:7844', startedAt: ago(60_000), heartbeatAt: ago(0) });
  await store.edges.record({ id: 'crashed', location: 'fra', tunnelAddress: '198.18.0.1:7844', startedAt: ago(60_000), heartbeatAt: ago(EDGE_TTL_MS + 1000) });
  await store.tunnels.recordConnection(conn('of-sibling', 'sibling'));
  await store.tunnels.recordConnection(conn('of-crashed', 'crashed'));
  await store.tunnels.recordConnection(conn('of-unknown-edge', 'gone'));
  await store.tunnels.recordConnection(conn('no-edge', null));
  await store.tunnels.recordConnection({ ...conn('elsewhere', null), edgeLocation: 'lhr' });

  expect(await store.tunnels.forgetConnectionsAt('fra')).toBe(3);
  const rows = await store.driver.all<{ id: string }>('SELECT id FROM tunnel_connections');
  expect(rows.map((r) => r.id).sort()).toEqual(['elsewhere', 'of-sibling']);
});
