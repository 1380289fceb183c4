// An ngtcp2 connector toward an edge at a near (private) address counts its congestion window in
// NEAR_CWND_UNIT bytes: the window starts at two units and, since ngtcp2 0.12's CUBIC caps it at
// 2.89 × max(2 units, delivery rate × min RTT), a bulk transfer takes it to ~376 KB at least,
// whatever slow start's rate samples and an idle moment's min RTT would have allowed — on a
// sub-millisecond path those set windows of 55–380 KB that a connection kept for its life.
// Packets keep their size. OXY_QUIC_NEAR_CWND=0: ngtcp2's window in packets, as toward any address.
// The edge counts its own window toward a near connector (device → host's sender on the vnet path)
// in EDGE_NEAR_CWND_UNIT, decided per connection from the peer's address: a cap's floor of ~1.16 MB,
// where its frozen window of ~300–450 KB made the edge and the connector take turns.
// OXY_QUIC_EDGE_NEAR_CWND=0: the edge's window in packets.
// Both ends pass their unit as `nearCwndUnit` and the addon decides near from the path (cpp/quic-core.cc
// IsNearAddress; its ranges: test/unit/native/address-kind.test.ts).
//
//   client netns  cli0 198.18.8.100/24 ── veth ── srv0 198.18.8.1/24  server netns
import { expect, it } from 'vitest';
import { EDGE_NEAR_CWND_UNIT, NEAR_CWND_UNIT } from '../../../src/engine/transport/quic/config.js';
import type { Ngtcp2TunnelConnection } from '../../../src/engine/transport/quic/ngtcp2-connection.js';
import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { createEdgeIdentity } from '../../../src/engine/transport/identity.js';
import { type Ngtcp2Pair, ngtcp2Bulk, ngtcp2NetnsSuite, ngtcp2VethSuite } from './ngtcp2-netns.js';

const SERVER = '198.18.8.1';
const SIZE = 8 * 1024 * 1024;
/** ngtcp2 0.12's cap on a window counted in NEAR_CWND_UNIT: 2.89 × 2 units. */
const FLOOR = Math.floor((2 * NEAR_CWND_UNIT * 289) / 100);
/** The same for the edge's window, counted in EDGE_NEAR_CWND_UNIT. */
const EDGE_FLOOR = Math.floor((2 * EDGE_NEAR_CWND_UNIT * 289) / 100);
/** The edge's end of a test's connection (the listener's: an ngtcp2 connection too). */
const edgeCwnd = (edge: unknown): number => (edge as Ngtcp2TunnelConnection).quicStats().cwnd;

privilegedDescribe('ngtcp2 window toward a near edge', () => {
  const pair = ngtcp2VethSuite('oxy-near', SERVER, '198.18.8.100');

  it('the connector starts at two units and sends 8 MiB with a window of at least 2.89 × 2 units, bytes intact both ways', async () => {
    const first = await withEnv({ OXY_QUIC_NEAR_CWND: undefined }, () => ngtcp2Bulk({ ...pair, size: 1024 }));
    expect(first.conn.quicStats().cwnd).toBeGreaterThanOrEqual(2 * NEAR_CWND_UNIT);
    const { conn } = await withEnv({ OXY_QUIC_NEAR_CWND: undefined }, () => ngtcp2Bulk({ ...pair, size: SIZE }));
    const stats = conn.quicStats();
    expect(stats.cwnd).toBeGreaterThanOrEqual(FLOOR);
    // The unit sizes the window, not the packets: PMTUD's 1,444 on this 1,500-byte link.
    expect('pathPayload' in stats && stats.pathPayload).toBe(1444);
  }, 60_000);

  it('the edge starts at two of its units toward a near connector and sends 8 MiB with a window of at least 2.89 × 2 units', async () => {
    const first = await withEnv({ OXY_QUIC_EDGE_NEAR_CWND: undefined }, () => ngtcp2Bulk({ ...pair, size: 1024 }));
    expect(edgeCwnd(first.edge)).toBeGreaterThanOrEqual(2 * EDGE_NEAR_CWND_UNIT);
    const { edge } = await withEnv({ OXY_QUIC_EDGE_NEAR_CWND: undefined }, () => ngtcp2Bulk({ ...pair, size: SIZE }));
    expect(edgeCwnd(edge)).toBeGreaterThanOrEqual(EDGE_FLOOR);
    // The unit sizes the window, not the packets.
    expect((edge as Ngtcp2TunnelConnection).quicStats().pathPayload).toBe(1444);
  }, 60_000);

  it("OXY_QUIC_EDGE_NEAR_CWND=0: the edge's window in packets; bytes intact", async () => {
    const { edge } = await withEnv({ OXY_QUIC_EDGE_NEAR_CWND: '0' }, () => ngtcp2Bulk({ ...pair, size: 1024 }));
    expect(edgeCwnd(edge)).toBeLessThan(2 * NEAR_CWND_UNIT);
  }, 60_000);

  it('OXY_QUIC_NEAR_CWND=0: the window in packets, as toward any address; bytes intact', async () => {
    const { conn } = await withEnv({ OXY_QUIC_NEAR_CWND: '0' }, () => ngtcp2Bulk({ ...pair, size: 1024 }));
    // ngtcp2's initial window of 14,720 bytes, and what the handshake's and 1 KiB's ACKs added in slow start.
    expect(conn.quicStats().cwnd).toBeLessThan(2 * NEAR_CWND_UNIT);
  }, 60_000);
});

privilegedDescribe('ngtcp2 window toward a connector that is not near', () => {
  // 2001:db8::/32 (documentation) is not a near range: the edge's unit stays its packet size.
  //   client netns  cli0 2001:db8:0:9::100/64 ── veth ── srv0 2001:db8:0:9::1/64  server netns
  const address = '2001:db8:0:9::1';
  const pair = { address } as Ngtcp2Pair;
  pair.open = ngtcp2NetnsSuite(async (create) => {
    pair.id = await createEdgeIdentity({ ips: [address] });
    pair.server = create('oxy-far-srv');
    pair.client = create('oxy-far-cli');
    pair.server.veth('srv0', pair.client, 'cli0');
    pair.server.ipBatch([`addr add ${address}/64 dev srv0 nodad`]);
    pair.client.ipBatch(['addr add 2001:db8:0:9::100/64 dev cli0 nodad']);
  });

  it('the edge counts its window in packets there, whatever EDGE_NEAR_CWND_UNIT is; bytes intact', async () => {
    const { edge } = await withEnv({ OXY_QUIC_EDGE_NEAR_CWND: undefined }, () => ngtcp2Bulk({ ...pair, size: 1024 }));
    expect(edgeCwnd(edge)).toBeLessThan(2 * NEAR_CWND_UNIT);
  }, 60_000);

  it('the connector counts its window in packets toward that edge, though it passes NEAR_CWND_UNIT; bytes intact', async () => {
    const { conn } = await withEnv({ OXY_QUIC_NEAR_CWND: undefined }, () => ngtcp2Bulk({ ...pair, size: 1024 }));
    expect(conn.quicStats().cwnd).toBeLessThan(2 * NEAR_CWND_UNIT);
  }, 60_000);
});
