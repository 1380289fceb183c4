// The connector's QUIC client on ngtcp2 (the addon's ngtcp2 + GnuTLS, the default) against an
// edge on quiche (OXY_QUIC_SERVER_IMPL=quiche), a pairing mixed versions make: processes, curl
// through the tunnel, many streams at once, bulk bytes both ways, a refused certificate, and a
// redial after the edge was killed.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { createEdgeIdentity } from '../../../src/engine/transport/identity.js';
import { dialQuic, listenQuic, Ngtcp2TunnelConnection, type QuicDialError } from '../../../src/engine/transport/quic/index.js';
import { savedEnv, setEnv } from '../../helpers/env.js';
import { startEdge, useWebTunnel } from '../../helpers/processes.js';
import { expectServes, getVia, quicTunnel, useBulkOrigin } from './support.js';

const t = useWebTunnel();
const NGTCP2 = { OXY_QUIC_IMPL: 'ngtcp2', NODE_DEBUG: 'oxy:transport:quic' };
const QUICHE_EDGE = { OXY_QUIC_SERVER_IMPL: 'quiche' };
const BULK = randomBytes(24 * 1024 * 1024);

const origin = useBulkOrigin(BULK);

const tunnel = (connections = 2) => quicTunnel(t, origin.url, { connections, edgeEnv: QUICHE_EDGE, connectorEnv: NGTCP2 });
const get = getVia;

describe('connector on ngtcp2, edge on quiche', () => {
  it('registers over ngtcp2 and serves curl, 300 concurrent requests and bulk bytes both ways', async () => {
    const e = await tunnel();
    // The start line names the library; the debug line proves the ngtcp2 client carried the registration.
    expect(e.connector.output).toMatch(/Starting tunnel [^\n]*protocol=quic quicClient=ngtcp2/);
    expect(e.edge.output).toMatch(/Tunnel listener ready protocol=quic [^\n]*quicServer=quiche/);
    // A debug line on stderr, the registration on stdout: the pipes need not arrive in order.
    await e.connector.waitFor(/connector \(ngtcp2\) established with 127\.0\.0\.1:/);
    await expectServes(e.httpPort, BULK);
  }, 60_000);

  it('redials when the edge is killed and another takes its port', async () => {
    const e = await tunnel(1);
    expect((await get(e.httpPort, '/before')).body.toString()).toBe('hello /before');
    e.edge.kill();
    await e.edge.exited();
    const second = await startEdge(t.home, [], { tunnel: e.tunnelPort }, QUICHE_EDGE);
    t.procs.push(second.edge);
    // The new edge answers the old connection's packets with a stateless reset (or the
    // connector's watchdog gives up on the silent connection): it dials again.
    await second.edge.waitFor(/Registered tunnel connection [^\n]*connIndex=0 [^\n]*protocol=quic/, 30_000);
    expect((await get(second.httpPort, '/after')).body.toString()).toBe('hello /after');
    expect(e.connector.output).toMatch(/Connection terminated connIndex=0 /);
    expect(e.connector.count(/connector \(ngtcp2\) established/)).toBeGreaterThanOrEqual(2);
  }, 60_000);
});

describe('ngtcp2 dial in process', () => {
  const saved = savedEnv(['OXY_QUIC_IMPL']);
  beforeAll(() => setEnv({ OXY_QUIC_IMPL: 'ngtcp2' }));
  afterAll(() => setEnv(saved));

  it('refuses an edge whose certificate another CA signed, saying so', async () => {
    const edge = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
    const other = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
    const listener = await listenQuic({ cert: edge.certChain, key: edge.key, host: '127.0.0.1', impl: 'quiche' }, () => {});
    try {
      const err = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: other.caCert, timeoutMs: 5000 }).catch((e: unknown) => e);
      expect(isOxyError(err, 'OXY_ERR_TUNNEL_HANDSHAKE'), String(err)).toBe(true);
      expect((err as QuicDialError).failure).toBe('tls');
      expect((err as Error).message).toMatch(/TLS alert 48 \(unknown CA\)/);
      // The same CA passes: the refusal was the certificate's.
      const ok = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: edge.caCert, caPin: edge.caPin });
      expect(ok).toBeInstanceOf(Ngtcp2TunnelConnection);
      ok.close();
    } finally {
      await listener.close();
    }
  });
});
