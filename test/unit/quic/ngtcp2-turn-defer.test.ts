// With OXY_QUIC_TURN_DEFER=1 (read as a connection's socket is made; opt-in, for quiet-machine
// pairs) a loop turn's flush of at most 4 KiB of waiting stream data waits one turn for more to ride
// with it (docs/decisions.md, session 23): requests and answers arrive whole and in order with the
// wait, and a bulk transfer both ways (more than 4 KiB waits: no turn deferred) stays intact; by
// default no flush waits.
import { describe, expect, it } from 'vitest';
import type { NativeQuicCounters } from '../../../src/engine/native/binding.js';
import type { QuicClientConnection, QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import { bulkBothWays, envPairs } from './support.js';

describe('ngtcp2: a few small writes wait one loop turn (OXY_QUIC_TURN_DEFER=1)', () => {
  const makePair = envPairs(['OXY_QUIC_TURN_DEFER']);

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

  it('with OXY_QUIC_TURN_DEFER=1 200 requests and answers arrive whole, their flushes a turn later; bulk both ways intact', async () => {
    const { client, server } = await makePair({ env: { OXY_QUIC_TURN_DEFER: '1' } });
    await requests(client, server, 200);
    expect(counters(client).turnDefers).toBeGreaterThan(100);
    expect(counters(server).turnDefers).toBeGreaterThan(100);
    const before = counters(client).turnDefers + counters(server).turnDefers;
    await bulkBothWays(client, server, 8);
    // The bulk's 256 KiB writes wait for no turn (only its last small remainders may).
    expect(counters(client).turnDefers + counters(server).turnDefers - before).toBeLessThan(50);
  }, 60_000);

  it('by default no flush waits: requests and bulk intact', async () => {
    const { client, server } = await makePair({ env: { OXY_QUIC_TURN_DEFER: undefined } });
    await requests(client, server, 200);
    await bulkBothWays(client, server, 8);
    expect(counters(client).turnDefers).toBe(0);
    expect(counters(server).turnDefers).toBe(0);
  }, 60_000);
});
