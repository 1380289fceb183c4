// Path MTU discovery on the addon's ngtcp2 connections over a path whose MTU is below both
// ends' links: a router namespace forwards between two 1,500-byte links over hops of 1,400, so
// what each end's own kernel lets out (up to 1,472 bytes of UDP payload) is lost on the way once it
// is above 1,372. ngtcp2's probes of 1,406 bytes are lost (three, then given up), 1,342 is
// acknowledged: packets stay at 1,342, the lost probes cost no congestion window, and every byte
// arrives both ways. The same path without PMTUD carries the fixed 1,350-byte packets.
//
//   client netns  cli0 198.18.7.100 ── r0 198.18.7.1 [router, MTU 1,400 both hops] r1 198.18.8.1 ── srv0 198.18.8.2  server netns
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/transport/identity.js';
import type { Ngtcp2TunnelConnection, QuicClientConnection, QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import type { TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { until } from '../../helpers/until.js';
import { collect, sha256 } from '../../unit/quic/support.js';
import { ngtcp2Bulk, ngtcp2NetnsSuite } from './ngtcp2-netns.js';

const SERVER = '198.18.8.2';
const SIZE = 4 * 1024 * 1024;

privilegedDescribe('ngtcp2 path MTU discovery across a router with a smaller MTU', () => {
  let server!: TestNetns;
  let client!: TestNetns;
  let id: EdgeIdentity;
  const open = ngtcp2NetnsSuite(async (create) => {
    id = await createEdgeIdentity({ ips: [SERVER] });
    server = create('oxy-pmtu-srv');
    const router = create('oxy-pmtu-rtr');
    client = create('oxy-pmtu-cli');
    client.veth('cli0', router, 'r0');
    server.veth('srv0', router, 'r1');
    client.ipBatch(['addr add 198.18.7.100/24 dev cli0', 'route add 198.18.8.0/24 via 198.18.7.1']);
    server.ipBatch([`addr add ${SERVER}/24 dev srv0`, 'route add 198.18.7.0/24 via 198.18.8.1']);
    router.ipBatch(['addr add 198.18.7.1/24 dev r0', 'addr add 198.18.8.1/24 dev r1', 'link set dev r0 mtu 1400', 'link set dev r1 mtu 1400']);
    router.exec('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  });

  const bulk = (pmtud: boolean) => ngtcp2Bulk({ server, client, address: SERVER, id, size: SIZE, open, pmtud });

  const stats = (c: QuicClientConnection | QuicServerConnection) => (c as Ngtcp2TunnelConnection).quicStats();

  it('probes above the path are lost and given up; 1,342-byte packets stay, bytes intact both ways', async () => {
    const { conn, edge } = await bulk(true);
    // 1,406 is given up after three probes (PTO, PTO, 3 × PTO), then 1,342 is acknowledged.
    await until(() => stats(conn).pathPayload === 1342 && stats(edge).pathPayload === 1342, 20_000, 'both ends at 1,342');
    expect(conn.maxDatagramSize).toBe(1342 - 46);
    expect(edge.maxDatagramSize).toBe(1342 - 46);
    // And the connection carries on at that size.
    const back = edge.acceptStream();
    const s = await conn.openStream();
    const data = randomBytes(1024 * 1024);
    const atClient = collect(s);
    s.end(data);
    const b = await back;
    const atEdge = collect(b);
    b.end(data);
    expect(sha256(await atEdge)).toBe(sha256(data));
    expect(sha256(await atClient)).toBe(sha256(data));
  }, 60_000);

  it('without PMTUD (OXY_QUIC_PMTUD=0) the fixed 1,350-byte packets cross the same path', async () => {
    const { conn, edge } = await bulk(false);
    expect(stats(conn).pmtud).toBe(false);
    expect(stats(conn).pathPayload).toBe(1350);
    expect(stats(edge).pathPayload).toBe(1350);
  }, 60_000);
});
