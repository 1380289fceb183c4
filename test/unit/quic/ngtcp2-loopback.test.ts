// ngtcp2's loopback profile (OXY_NGTCP2_LOOPBACK, decided per connection from the peer's
// address): 64 KB packets and an ACK per 8 packets by default, a congestion window counted in
// 1 MiB units with `all` — between ngtcp2 ends only as far as the peer allows (quiche advertises
// 16 KB); none of it with `none`.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { QuicClientConnection, QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import type { NativeQuicCounters } from '../../../src/engine/native/binding.js';
import { withEnv } from '../../helpers/env.js';
import { bulkBothWays, collect, envPairs, sha256 } from './support.js';

type Lib = 'quiche' | 'ngtcp2';

describe('ngtcp2 on loopback', () => {
  const makePair = envPairs(['OXY_NGTCP2_LOOPBACK']);
  const pair = (edge: Lib, connector: Lib, host = '127.0.0.1', profile = 'all') =>
    makePair({ edge, connector, host, env: { OXY_NGTCP2_LOOPBACK: profile || undefined } });

  /** An ngtcp2 connection's pacing counters (quiche's connections have none). */
  function counters(c: QuicClientConnection | QuicServerConnection): NativeQuicCounters {
    const stats = c.quicStats();
    const counters = 'counters' in stats ? (stats.counters as NativeQuicCounters | undefined) : undefined;
    if (!counters) throw new Error('quicStats() has no counters: not an ngtcp2 connection');
    return counters;
  }

  it('with all, ngtcp2 ends take 64 KB packets and a window past 1 MB, on 127.0.0.1 and ::1', async () => {
    for (const host of ['127.0.0.1', '::1']) {
      const { client, server } = await pair('ngtcp2', 'ngtcp2', host);
      // The largest DATAGRAM frame follows the packet size (64,954 bytes in a 65,000-byte packet).
      expect(client.maxDatagramSize).toBeGreaterThan(60_000);
      expect(server.maxDatagramSize).toBeGreaterThan(60_000);
      expect(client.quicStats().cwnd).toBeGreaterThan(1024 * 1024);
      expect(server.quicStats().cwnd).toBeGreaterThan(1024 * 1024);
      await bulkBothWays(client, server, 24);
    }
  }, 60_000);

  it('with all, packets toward a quiche peer stay at what it advertises (16 KB), both ways intact', async () => {
    for (const [edge, connector] of [
      ['ngtcp2', 'quiche'],
      ['quiche', 'ngtcp2'],
    ] as const) {
      const { client, server } = await pair(edge, connector);
      expect(client.maxDatagramSize).toBeLessThan(16_384);
      expect(server.maxDatagramSize).toBeLessThan(16_384);
      await bulkBothWays(client, server, 16);
    }
  }, 60_000);

  it('by default (OXY_NGTCP2_LOOPBACK unset): 64 KB packets, the window counted in packets as on any path, bulk intact', async () => {
    const { client, server } = await pair('ngtcp2', 'ngtcp2', '127.0.0.1', '');
    expect(client.maxDatagramSize).toBeGreaterThan(60_000);
    expect(server.maxDatagramSize).toBeGreaterThan(60_000);
    // ngtcp2's initial window: 2 packets of 65,000 bytes (not 2 MiB, as with `window`).
    expect(client.quicStats().cwnd).toBeLessThan(256 * 1024);
    await bulkBothWays(client, server, 16);
  }, 60_000);

  it('counts what held a transfer back: a reader that stops holds its credit, the sender waits for it, then every byte arrives', async () => {
    const { client, server } = await pair('ngtcp2', 'ngtcp2', '127.0.0.1', '');
    const up = randomBytes(24 * 1024 * 1024);
    const accepted = server.acceptStream();
    const stream = await client.openStream();
    stream.write(up.subarray(0, 1024));
    const peer = await accepted;
    peer.pause();
    for (let off = 1024; off < up.length; off += 256 * 1024) stream.write(up.subarray(off, Math.min(up.length, off + 256 * 1024)));
    stream.end();
    // The stream's window is 8 MiB: the sender runs out of credit while the reader holds it back.
    const deadline = Date.now() + 20_000;
    while (counters(client).stopBlocked === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const held = { client: counters(client), server: counters(server) };
    expect(held.client.stopBlocked).toBeGreaterThan(0);
    expect(held.client.writableWaits).toBeGreaterThan(0);
    expect(held.server.creditHeld).toBeGreaterThan(0);
    expect(held.client.streamBytes).toBeLessThan(up.length);
    const got = collect(peer);
    const back = collect(stream);
    peer.resume();
    expect(sha256(await got)).toBe(sha256(up));
    peer.end();
    expect((await back).length).toBe(0);
    const after = counters(client);
    // Every byte went (the preamble and the DATA frames' headers besides), none of them the server's.
    expect(after.streamBytes).toBeGreaterThan(up.length);
    expect(after.flushes).toBeGreaterThan(0);
    expect(counters(server).streamBytes).toBeLessThan(1024);
  }, 60_000);

  it('with OXY_QUIC_ACK_DELAY=0 (a client acknowledges without delay on the loopback ACK profile): bulk intact both ways', async () => {
    const { client, server } = await withEnv({ OXY_QUIC_ACK_DELAY: '0' }, () => pair('ngtcp2', 'ngtcp2', '127.0.0.1', ''));
    await bulkBothWays(client, server, 16);
    expect(counters(server).answers).toBeGreaterThan(0);
    expect(counters(client).answers).toBeGreaterThan(0);
  }, 60_000);

  it('with OXY_NGTCP2_LOOPBACK=none: packets and window as on any path, bulk intact', async () => {
    const { client, server } = await pair('ngtcp2', 'ngtcp2', '127.0.0.1', 'none');
    expect(client.maxDatagramSize).toBeLessThan(16_384);
    expect(server.maxDatagramSize).toBeLessThan(16_384);
    // ngtcp2's initial window: 2 packets of 16 KB.
    expect(client.quicStats().cwnd).toBeLessThan(64 * 1024);
    await bulkBothWays(client, server, 16);
  }, 60_000);
});
