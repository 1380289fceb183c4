// A connector that redials one of its connections (same connector ID, same index) while the
// edge still holds the old one (a QUIC path the edge cannot see die): the new registration
// closes the old connection at once instead of leaving it to the 15 s idle timeout.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createTunnel } from '../../../src/core/tunnels.js';
import { runEdge } from '../../../src/engine/edge/run.js';
import type { EdgeServer } from '../../../src/engine/edge/server.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { registerConnection } from '../../../src/engine/protocol/registration.js';
import { loadEdgeIdentity } from '../../../src/engine/transport/identity-files.js';
import { dialQuic } from '../../../src/engine/transport/quic/index.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';
import { Store } from '../../../src/store/index.js';
import { tempHome } from '../../helpers/cli.js';

let home: string;
let cleanup: () => void;
let store: Store;
let edge: EdgeServer;
const conns: TunnelConnection[] = [];

beforeEach(async () => {
  ({ home, cleanup } = tempHome());
  store = await Store.open(home);
  await createTunnel(store, { name: 'web' }); // before the edge: its view reads the store at start
  edge = await runEdge({ home, store, log: createLogger({ level: 'silent' }), tunnelListen: '127.0.0.1:0', location: 'test' });
});
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  await edge.stop();
  await store.close();
  cleanup();
});

it('a new registration of the same connector and index supersedes the old connection at once', async () => {
  const tunnel = (await store.tunnels.byLiveName('web'))!;
  const secret = Buffer.from((await store.tunnels.byId(tunnel.id))!.secret, 'base64');
  const identity = loadEdgeIdentity(home);
  const port = edge.tunnelAddresses.find((l) => l.protocol === 'quic')!.address.port;
  const connectorId = randomUUID();
  const register = async (connIndex: number) => {
    const conn = await dialQuic({ host: '127.0.0.1', port, ca: identity.caCert, caPin: identity.caPin });
    conns.push(conn);
    await registerConnection(conn, { tunnelId: tunnel.id, secret, connectorId, connIndex, clientVersion: 'test' });
    return conn;
  };
  const first = await register(0);
  const sibling = await register(1);
  const again = await register(0);
  const closed = await Promise.race([first.closed, new Promise((r) => setTimeout(() => r('still open'), 3000))]);
  expect(closed).toMatchObject({ remote: true, reason: 'superseded by a new registration of the same connector' });
  // Only the old index 0 went: the sibling and the new one serve on.
  expect(sibling.isClosed).toBe(false);
  expect(again.isClosed).toBe(false);
  expect(
    edge.registry
      .connections(tunnel.id)
      .map((c) => c.conn.remotePort)
      .sort(),
  ).toEqual([sibling.localPort, again.localPort].sort());
});
