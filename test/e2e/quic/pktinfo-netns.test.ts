// The QUIC listener bound to the wildcard on a host with several addresses answers every
// client from the address that client dialed (IP_PKTINFO: the source each library reports).
//
//   client netns  cli0 198.18.4.100/24, 2001:db8:0:4::100/64
//        │ veth
//   server netns  srv0 198.18.4.1 + 198.18.4.2 /24, 2001:db8:0:4::1 + ::2 /64 (nodad)
//
// Sockets are created on the main thread inside each namespace (withNetns) and used from
// here. The control runs the same QUIC listener over a plain dgram socket: its replies
// leave from the kernel's choice, the client drops them, and the handshake to at least
// one address per family fails. Builds on test/e2e/native/multi-address.test.ts, which
// shows the same at the UDP level.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/transport/identity.js';
import { PktinfoUdpSocket, withNetns } from '../../../src/engine/native/index.js';
import { dialQuic, listenQuic, QuicDialError, quicServerImpl, type QuicListener, type QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import { TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { bindDgramSync } from '../native/support.js';
import { collect, echo } from '../../unit/quic/support.js';
import { DgramAsPktinfo, recordSources } from './support.js';

const V4 = ['198.18.4.1', '198.18.4.2'];
const V6 = ['2001:db8:0:4::1', '2001:db8:0:4::2'];

privilegedDescribe('QUIC listener on the wildcard of a multi-address interface (network namespaces)', () => {
  let server: TestNetns | undefined;
  let client: TestNetns | undefined;
  let id: EdgeIdentity;
  const closers: Array<() => unknown> = [];

  beforeAll(async () => {
    id = await createEdgeIdentity({ ips: [...V4, ...V6] });
    server = TestNetns.create('oxy-quic-srv');
    client = TestNetns.create('oxy-quic-cli');
    server.veth('srv0', client, 'cli0');
    server.ipBatch([...V4.map((a) => `addr add ${a}/24 dev srv0`), ...V6.map((a) => `addr add ${a}/64 dev srv0 nodad`)]);
    client.ipBatch(['addr add 198.18.4.100/24 dev cli0', 'addr add 2001:db8:0:4::100/64 dev cli0 nodad']);
  });

  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    server?.delete();
    client?.delete();
  });

  function clientSocket(address: string): PktinfoUdpSocket {
    const v6 = address.includes(':');
    const socket = withNetns(client!.path, () => PktinfoUdpSocket.bind({ address: v6 ? '::' : '0.0.0.0', ipv6Only: v6 }));
    closers.push(() => socket.close());
    return socket;
  }

  /** Dial `address` from the client namespace; the sources the client saw, and the outcome. */
  async function dial(address: string, port: number, handshakeTimeoutMs = 5000) {
    const socket = clientSocket(address);
    const sources = recordSources(socket);
    try {
      const conn = await dialQuic({ host: address, port, ca: id.caCert, caPin: id.caPin, socket, handshakeTimeoutMs });
      const stream = await conn.openStream();
      const body = collect(stream);
      stream.end(`hello ${address}`);
      const echoed = (await body).toString();
      conn.close();
      return { ok: true as const, sources: [...sources], echoed };
    } catch (err) {
      return { ok: false as const, sources: [...sources], error: err as Error };
    }
  }

  it('answers each of two IPv4 and two IPv6 addresses from that address (one dual-stack socket on ::)', async () => {
    const socket = withNetns(server!.path, () => PktinfoUdpSocket.bind({ address: '::' }));
    const accepted: QuicServerConnection[] = [];
    const listener: QuicListener = await listenQuic({ cert: id.certChain, key: id.key, socket }, (conn) => {
      accepted.push(conn);
      echo(conn);
    });
    closers.push(
      () => socket.close(),
      () => listener.close(),
    );
    expect(listener.address.address).toBe('::');
    // The addon's ngtcp2 server answers (quiche on the legs with OXY_QUIC_SERVER_IMPL=quiche).
    expect(listener.impl).toBe(quicServerImpl());

    for (const address of [...V4, ...V6]) {
      const result = await dial(address, listener.address.port);
      expect(result, address).toMatchObject({ ok: true, echoed: `hello ${address}` });
      // Every datagram the client received came from the address it dialed.
      expect(result.sources, address).toEqual([address]);
    }
    // The edge saw each connection arrive on the address it was dialed at.
    expect(accepted.map((c) => c.localAddress)).toEqual([...V4, ...V6]);
  });

  it('control: the same QUIC listener over a plain dgram socket answers from the wrong address and the handshake fails', async () => {
    const [dgram4, dgram6] = withNetns(server!.path, () => [
      new DgramAsPktinfo(bindDgramSync('udp4', '0.0.0.0')),
      new DgramAsPktinfo(bindDgramSync('udp6', '::', 0, true)),
    ]);
    const listeners = await Promise.all([dgram4!, dgram6!].map((d) => listenQuic({ cert: id.certChain, key: id.key, socket: d.asPktinfo() }, echo)));
    closers.push(
      () => dgram4!.close(),
      () => dgram6!.close(),
      ...listeners.map((l) => () => l.close()),
    );

    const results = new Map<string, Awaited<ReturnType<typeof dial>>>();
    for (const address of V4) results.set(address, await dial(address, listeners[0]!.address.port, 1500));
    for (const address of V6) results.set(address, await dial(address, listeners[1]!.address.port, 1500));

    // The kernel answers 198.18.4.2 from the subnet's primary 198.18.4.1: the client drops it.
    const second = results.get('198.18.4.2')!;
    expect(second.ok).toBe(false);
    expect((second as { error: Error }).error).toBeInstanceOf(QuicDialError);
    expect(second.sources).toEqual(['198.18.4.1']);
    // IPv6: one source per route, so at least one of the two addresses is answered wrongly.
    const wrong6 = V6.filter((a) => !results.get(a)!.ok);
    expect(wrong6.length).toBeGreaterThanOrEqual(1);
    for (const a of wrong6) expect(results.get(a)!.sources).not.toContain(a);
    // ... while the primary addresses work, so the dgram listener really served.
    expect(results.get('198.18.4.1')!.ok).toBe(true);
  });
}, ['root', 'netns']);
