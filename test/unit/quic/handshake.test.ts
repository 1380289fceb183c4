import { afterEach, describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { createEdgeIdentity } from '../../../src/engine/transport/identity.js';
import {
  dialQuic,
  listenQuic,
  Ngtcp2TunnelConnection,
  QUIC_ALPN,
  QuicDialError,
  quicClientImpl,
  quicServerImpl,
  type QuicListener,
} from '../../../src/engine/transport/quic/index.js';
import { collect, connectPair, edgeIdentity, echo, type Pair } from './support.js';

describe('QUIC handshake (loopback)', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it('connects with the edge identity and carries a stream both ways', async () => {
    const pair: Pair = await connectPair();
    cleanups.push(pair.close);
    expect(pair.client.protocol).toBe('quic');
    // Each leg really dials with its library (vitest projects `quiche`, `quiche-connector`: OXY_QUIC_IMPL=quiche).
    expect(pair.client instanceof Ngtcp2TunnelConnection).toBe(quicClientImpl() === 'ngtcp2');
    // … and listens with its library (`quiche`, `quiche-edge`: OXY_QUIC_SERVER_IMPL=quiche).
    expect(pair.listener.impl).toBe(quicServerImpl());
    expect(pair.server instanceof Ngtcp2TunnelConnection).toBe(quicServerImpl() === 'ngtcp2');
    expect(pair.client.role).toBe('connector');
    expect(pair.server.role).toBe('edge');
    expect(pair.server.remotePort).toBe(pair.client.localPort);
    expect(pair.client.supportsDatagrams).toBe(true);
    expect(pair.client.datagramsReliable).toBe(false);
    expect(pair.client.maxDatagramSize).toBeGreaterThan(1000);
    expect(QUIC_ALPN).toBe('oxy-tunnel-quic/1');

    echo(pair.server);
    const stream = await pair.client.openStream();
    expect(typeof stream.id).toBe('number');
    const body = collect(stream);
    stream.end('hello over quic');
    expect((await body).toString()).toBe('hello over quic');
  });

  it('the edge can open streams toward the connector too', async () => {
    const pair = await connectPair();
    cleanups.push(pair.close);
    echo(pair.client);
    const stream = await pair.server.openStream();
    const body = collect(stream);
    stream.end('from the edge');
    expect((await body).toString()).toBe('from the edge');
  });

  it('verifies by CA pin and by the IP SAN', async () => {
    const id = await edgeIdentity();
    const pair = await connectPair({}, { caPin: id.caPin });
    cleanups.push(pair.close);
    expect(pair.client.isClosed).toBe(false);
  });

  it('refuses an edge signed by another CA', async () => {
    const id = await edgeIdentity();
    const other = await createEdgeIdentity({ ips: ['127.0.0.1'] });
    const listener: QuicListener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1' }, () => {});
    cleanups.push(() => listener.close());
    const err = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: other.caCert, handshakeTimeoutMs: 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(QuicDialError);
    expect(isOxyError(err, 'OXY_ERR_TUNNEL_HANDSHAKE')).toBe(true);
    expect((err as QuicDialError).failure).toBe('tls');
    expect((err as Error).message).toMatch(/unknown CA/);
  });

  it('refuses a wrong pin and a name the certificate does not carry', async () => {
    const id = await edgeIdentity();
    const other = await createEdgeIdentity({ ips: ['127.0.0.1'] });
    const listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1' }, () => {});
    cleanups.push(() => listener.close());
    const port = listener.address.port;
    const pin = await dialQuic({ host: '127.0.0.1', port, ca: id.caCert, caPin: other.caPin }).catch((e) => e);
    expect(isOxyError(pin, 'OXY_ERR_TUNNEL_PIN_MISMATCH')).toBe(true);
    const name = await dialQuic({ host: '127.0.0.1', port, ca: id.caCert, servername: 'elsewhere.example' }).catch((e) => e);
    expect(isOxyError(name, 'OXY_ERR_TUNNEL_HANDSHAKE')).toBe(true);
    expect((name as QuicDialError).failure).toBe('tls');
    const ok = await dialQuic({ host: '127.0.0.1', port, ca: id.caCert, servername: 'localhost' });
    ok.close();
  });

  it('times out against a port nobody answers, saying so', async () => {
    const listener = await listenQuic({ cert: (await edgeIdentity()).certChain, key: (await edgeIdentity()).key, host: '127.0.0.1' }, () => {});
    const port = listener.address.port;
    await listener.close(); // nothing listens there now
    const started = Date.now();
    const err = await dialQuic({ host: '127.0.0.1', port, ca: (await edgeIdentity()).caCert, handshakeTimeoutMs: 400 }).catch((e) => e);
    expect(err).toBeInstanceOf(QuicDialError);
    expect(['timeout', 'unreachable']).toContain((err as QuicDialError).failure);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a listener refuses a broken certificate or an unknown congestion control with a clear error', async () => {
    const id = await edgeIdentity();
    const bad = await listenQuic({ cert: 'not a pem', key: id.key, host: '127.0.0.1' }, () => {}).catch((e) => e);
    expect(isOxyError(bad, 'OXY_ERR_TUNNEL_HANDSHAKE')).toBe(true);
    expect((bad as Error).message).toMatch(/certificate or key/);
    const cc = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', tuning: { congestionControl: 'vegas' } }, () => {}).catch((e) => e);
    expect(isOxyError(cc, 'OXY_ERR_INVALID_ARGUMENT')).toBe(true);
    expect((cc as Error).message).toMatch(/vegas/);
  });
});
