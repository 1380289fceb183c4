// The edge's QUIC listener on ngtcp2 (the addon's ngtcp2 + GnuTLS server, the default), with the
// connector on either library (OXY_QUIC_IMPL=quiche or ngtcp2): processes, curl through the tunnel, many
// requests at once, bulk bytes both ways, a client that trusts another CA refused, hostile
// datagrams at the QUIC port while a good client is served, and a restarted edge's stateless
// resets across libraries.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { createEdgeIdentity } from '../../../src/engine/transport/identity.js';
import { dialQuic, listenQuic, Ngtcp2TunnelConnection, type QuicDialError } from '../../../src/engine/transport/quic/index.js';
import { startEdge, useWebTunnel } from '../../helpers/processes.js';
import { expectServes, getVia, quicTunnel, useBulkOrigin } from './support.js';

const t = useWebTunnel();
const EDGE = { OXY_QUIC_SERVER_IMPL: 'ngtcp2', NODE_DEBUG: 'oxy:transport:quic' };
const BULK = randomBytes(24 * 1024 * 1024);

const origin = useBulkOrigin(BULK);

const tunnel = (client: 'quiche' | 'ngtcp2', connections = 2) =>
  quicTunnel(t, origin.url, { connections, edgeEnv: EDGE, connectorEnv: { OXY_QUIC_IMPL: client } });
const get = getVia;

/** QUIC-shaped garbage: random bytes, truncated long headers, Initials with random CIDs (a flood), short headers. */
function hostileDatagrams(count: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const kind = i % 5;
    if (kind === 0) out.push(randomBytes(1 + (i % 1400)));
    else if (kind === 1)
      out.push(Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 1]), randomBytes(i % 6)])); // cut inside the header
    else if (kind === 2) {
      // An Initial of the right size and version, DCID/SCID of 8 random bytes, garbage after.
      const head = Buffer.from([0xc3, 0, 0, 0, 1, 8, ...randomBytes(8), 8, ...randomBytes(8), 0]);
      out.push(Buffer.concat([head, randomBytes(1200 - head.length)]));
    } else if (kind === 3) out.push(Buffer.concat([Buffer.from([0x40 | (i & 0x3f)]), randomBytes(20 + (i % 200))]));
    else out.push(Buffer.concat([Buffer.from([0xc0, 0xff, 0, 0, 0x1d, 255]), randomBytes(1300)])); // another version, a CID too long
  }
  return out;
}

describe.each(['quiche', 'ngtcp2'] as const)('edge on ngtcp2, connector on %s', (client) => {
  it('registers and serves curl, 300 concurrent requests and bulk bytes both ways', async () => {
    const e = await tunnel(client);
    // The listener line names the library; the debug line proves the ngtcp2 edge took the registration.
    expect(e.edge.output).toMatch(/Tunnel listener ready protocol=quic [^\n]*quicServer=ngtcp2/);
    expect(e.connector.output).toMatch(new RegExp(`Starting tunnel [^\\n]*protocol=quic quicClient=${client}`));
    // The edge logs it on its own pipe: it may come after the connector saw itself registered.
    await e.edge.waitFor(/edge \(ngtcp2\) established with 127\.0\.0\.1:/);
    await expectServes(e.httpPort, BULK);
  }, 60_000);

  it('keeps serving a good client while hostile datagrams hit the QUIC port', async () => {
    const e = await tunnel(client, 1);
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    let stop = false;
    const flood = (async () => {
      const packets = hostileDatagrams(3000);
      for (let i = 0; i < packets.length && !stop; i += 50) {
        await Promise.all(packets.slice(i, i + 50).map((p) => new Promise<void>((r) => socket.send(p, e.tunnelPort, '127.0.0.1', () => r()))));
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let round = 0; round < 20; round++) {
      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => get(e.httpPort, `/g${round}-${i}`)));
      expect(replies.map((r) => r.body.toString())).toEqual(replies.map((_, i) => `hello /g${round}-${i}`));
    }
    stop = true;
    await flood;
    socket.close();
    expect(e.edge.child.exitCode).toBeNull();
    expect(e.edge.child.signalCode).toBeNull();
    expect(e.connector.output).not.toMatch(/Connection terminated/);
    expect((await get(e.httpPort, '/after')).body.toString()).toBe('hello /after');
  }, 60_000);
});

describe("a restarted edge resets its predecessor's connections, whichever library either runs", () => {
  // The stateless reset key derives from the edge's TLS key (stateless-reset.ts), and both
  // libraries issue HMAC(key, CID) tokens: a SIGKILLed edge's successor on the same port answers
  // the connector's next packet with a reset it recognises, and the connector dials again at once.
  it.each([
    ['ngtcp2', 'quiche'],
    ['quiche', 'ngtcp2'],
  ] as const)(
    'edge on %s, then on %s',
    async (first, second) => {
      const env = (lib: string) => ({ ...EDGE, OXY_QUIC_SERVER_IMPL: lib });
      // The restart below may take longer than the connector's 5 s of silence on a loaded machine:
      // it would redial as silent instead of hearing the reset (as in resilience's reset test).
      const e = await quicTunnel(t, origin.url, { connections: 1, edgeEnv: env(first), connectorEnv: { OXY_CONNECTOR_SILENT_MS: '120000' } });
      expect((await get(e.httpPort, '/before')).body.toString()).toBe('hello /before');
      e.edge.kill();
      await e.edge.exited();
      // The successor binds after the connector's first probe of the dead edge went out (the
      // watchdog's tick is 1 s): it is heard only if the connector keeps probing (ngtcp2 never
      // retransmits a lost PING).
      await new Promise((r) => setTimeout(r, 1200));
      const next = await startEdge(t.home, [], { tunnel: e.tunnelPort }, env(second));
      t.procs.push(next.edge);
      // Bounded waits sized for a loaded machine (each is a process's next packet, not a timer).
      await e.connector.waitFor(/Connection terminated connIndex=0 [^\n]*stateless reset/, 60_000);
      await next.edge.waitFor(/Registered tunnel connection [^\n]*connIndex=0 [^\n]*protocol=quic/, 60_000);
      expect((await get(next.httpPort, '/after')).body.toString()).toBe('hello /after');
    },
    150_000,
  );
});

describe('ngtcp2 edge in process', () => {
  it('a client that trusts another CA is refused (unknown CA); one that trusts ours passes', async () => {
    const edge = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
    const other = await createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1'] });
    const accepted: unknown[] = [];
    const listener = await listenQuic({ cert: edge.certChain, key: edge.key, host: '127.0.0.1', impl: 'ngtcp2' }, (c) => accepted.push(c));
    try {
      expect(listener.impl).toBe('ngtcp2');
      const err = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: other.caCert, timeoutMs: 5000 }).catch((e: unknown) => e);
      expect(isOxyError(err, 'OXY_ERR_TUNNEL_HANDSHAKE'), String(err)).toBe(true);
      expect((err as QuicDialError).failure).toBe('tls');
      expect((err as Error).message).toMatch(/TLS alert 48 \(unknown CA\)|certificate/);
      expect(listener.connections()).toHaveLength(0);
      const ok = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: edge.caCert, caPin: edge.caPin });
      await expect.poll(() => accepted.length).toBe(1);
      expect(accepted[0]).toBeInstanceOf(Ngtcp2TunnelConnection);
      ok.close();
    } finally {
      await listener.close();
    }
  });
});
