// With OXY_QUIC_ACK_WAIT=1 (read when a connection is made; off by default) an ACK of a few small
// packets waits (up to 1 ms) for data to ride on instead of leaving alone (docs/decisions.md,
// session 18): requests and answers both ways arrive whole and in order with the wait and without
// it, and a bulk transfer both ways, whose ACKs do not wait, stays intact.
import { describe, expect, it } from 'vitest';
import type { NativeQuicCounters } from '../../../src/engine/native/binding.js';
import type { QuicClientConnection, QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import { bulkBothWays, envPairs } from './support.js';

describe('ngtcp2: ACKs of small packets wait for data', () => {
  const makePair = envPairs(['OXY_QUIC_ACK_WAIT']);
  const pair = (wait: boolean) => makePair({ env: { OXY_QUIC_ACK_WAIT: wait ? '1' : undefined } });

  function counters(c: QuicClientConnection | QuicServerConnection): NativeQuicCounters {
    const stats = c.quicStats();
    const counters = 'counters' in stats ? (stats.counters as NativeQuicCounters | undefined) : undefined;
    if (!counters) throw new Error('quicStats() has no counters: not an ngtcp2 connection');
    return counters;
  }

  /** `count` requests of 100 bytes on one stream, each answered with 200 bytes before the next goes. */
  async function requests(client: QuicClientConnection, server: QuicServerConnection, count: number): Promise<void> {
    const accepted = server.acceptStream();
    const stream = await client.openStream();
    stream.write(Buffer.alloc(100, 0));
    const peer = await accepted;
    let seen = 0;
    peer.on('data', (chunk: Buffer) => {
      // Each complete request of 100 bytes is answered with 200 bytes.
      for (seen += chunk.length; seen >= 100; seen -= 100) peer.write(Buffer.alloc(200, 7));
    });
    let got = 0;
    for (let i = 1; i <= count; i++) {
      await new Promise<void>((resolve) => {
        const on = (chunk: Buffer): void => {
          got += chunk.length;
          if (got >= i * 200) {
            stream.off('data', on);
            resolve();
          }
        };
        stream.on('data', on);
        if (i > 1) stream.write(Buffer.alloc(100, i & 0xff));
      });
    }
    expect(got).toBe(count * 200);
    stream.end();
    peer.end();
  }

  it('with OXY_QUIC_ACK_WAIT=1 requests and answers arrive whole: ACKs waited for them', async () => {
    const { client, server } = await pair(true);
    await requests(client, server, 200);
    expect(counters(client).ackWaits + counters(server).ackWaits).toBeGreaterThan(0);
    await bulkBothWays(client, server, 8);
  }, 60_000);

  it('by default every flush writes its ACKs: requests and bulk intact', async () => {
    const { client, server } = await pair(false);
    await requests(client, server, 200);
    expect(counters(client).ackWaits).toBe(0);
    expect(counters(server).ackWaits).toBe(0);
    await bulkBothWays(client, server, 8);
  }, 60_000);
});
