/**
 * The edge registry on this leg's backend: live edges are those with a fresh heartbeat, a
 * dead edge's connections drop out of the tunnel's connections, rows written without an edge
 * id stay shown, and an edge dead for long is forgotten with its connections.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { listEdges } from '../../../src/core/edges.js';
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

/** A tunnel connection record opened just now, held by `edgeId` (null: written before edges had ids). */
const connection = (tunnelId: string, id: string, edgeId: string | null, edgeLocation: string) => ({
  id,
  tunnelId,
  connectorId: 'c',
  connIndex: 0,
  protocol: 'quic',
  originIp: '198.18.0.1',
  edgeLocation,
  clientVersion: '',
  arch: '',
  openedAt: ago(0),
  edgeId,
});

it('lists live edges only, hides a dead edge’s connections, and prunes edges dead for long', async () => {
  const { tunnel } = await createTunnel(store, { name: 'web' });
  const conn = (id: string, edgeId: string | null) => connection(tunnel.id, id, edgeId, id);
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
  const conn = (id: string, edgeId: string | null) => connection(tunnel.id, id, edgeId, 'fra');
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

it('edge list shows one edge per process group: its live workers, the earliest start, the latest heartbeat, the sum of connections', async () => {
  const { tunnel } = await createTunnel(store, { name: 'web' });
  const conn = (id: string, edgeId: string) => connection(tunnel.id, id, edgeId, 'fra');
  const fra = { location: 'fra', tunnelAddress: '198.18.0.1:7844' };
  // `edge run --workers 3` at fra: one worker died (stale heartbeat), one holds no connection.
  await store.edges.record({ id: 'w1', ...fra, startedAt: ago(50_000), heartbeatAt: ago(2000), groupId: 'g' });
  await store.edges.record({ id: 'w2', ...fra, startedAt: ago(60_000), heartbeatAt: ago(1000), groupId: 'g' });
  await store.edges.record({ id: 'w3', ...fra, startedAt: ago(70_000), heartbeatAt: ago(EDGE_TTL_MS + 1000), groupId: 'g' });
  // A single-process edge names its own id; a row written before groups has none.
  await store.edges.record({ id: 'solo', location: 'lhr', tunnelAddress: '198.18.0.2:7844', startedAt: ago(10_000), heartbeatAt: ago(0), groupId: 'solo' });
  await store.edges.record({ id: 'old', location: 'syd', tunnelAddress: '198.18.0.3:7844', startedAt: ago(10_000), heartbeatAt: ago(0) });
  await store.tunnels.recordConnection(conn('a', 'w1'));
  await store.tunnels.recordConnection(conn('b', 'w1'));
  await store.tunnels.recordConnection(conn('c', 'w3'));
  await store.tunnels.recordConnection(conn('d', 'solo'));

  const edges = await listEdges(store);
  expect(edges.map((e) => [e.id, e.location, e.workers.length, e.connections])).toEqual([
    ['g', 'fra', 2, 2],
    ['solo', 'lhr', 1, 1],
    ['old', 'syd', 1, 0],
  ]);
  const [g] = edges;
  expect(g!.tunnel_address).toBe('198.18.0.1:7844');
  expect(g!.started_at).toBe((await store.edges.live()).find((e) => e.id === 'w2')!.startedAt);
  expect(g!.heartbeat_at).toBe((await store.edges.live()).find((e) => e.id === 'w2')!.heartbeatAt);
  expect(g!.workers.sort((a, b) => a.id.localeCompare(b.id))).toEqual([
    { id: 'w1', connections: 2 },
    { id: 'w2', connections: 0 },
  ]);
  // The per-worker rows stay as they were (tunnel list/info and forwarding use them).
  expect((await store.edges.live()).map((e) => [e.id, e.groupId]).sort()).toEqual([
    ['old', undefined],
    ['solo', 'solo'],
    ['w1', 'g'],
    ['w2', 'g'],
  ]);
});
