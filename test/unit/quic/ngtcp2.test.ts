// What only the ngtcp2 client has: the addon's own stream table must empty once streams are
// done (a long-lived connector serves millions of them), clean ends and resets alike.
import { afterEach, describe, expect, it } from 'vitest';
import { Ngtcp2TunnelConnection } from '../../../src/engine/transport/quic/index.js';
import { savedEnv, setEnv } from '../../helpers/env.js';
import { collect, connectPair, echo, type Pair } from './support.js';

describe('ngtcp2 client', () => {
  const saved = savedEnv(['OXY_QUIC_IMPL']);
  let pair: Pair | undefined;
  afterEach(async () => {
    await pair?.close();
    pair = undefined;
    setEnv(saved);
  });

  it('forgets every stream once it is done, ended or reset', async () => {
    process.env.OXY_QUIC_IMPL = 'ngtcp2';
    pair = await connectPair();
    const client = pair.client as Ngtcp2TunnelConnection;
    expect(client).toBeInstanceOf(Ngtcp2TunnelConnection);
    echo(pair.server);
    for (let round = 0; round < 5; round++) {
      const streams = await Promise.all(Array.from({ length: 100 }, () => client.openStream()));
      expect(client.nativeStreams()).toBeGreaterThanOrEqual(100);
      const bodies = streams.map((s, i) => {
        const body = collect(s);
        s.end(`message ${round}/${i}`);
        return body;
      });
      expect((await Promise.all(bodies)).map(String)).toEqual(streams.map((_, i) => `message ${round}/${i}`));
    }
    // Half the next ones are reset mid-way by us.
    const cut = await Promise.all(Array.from({ length: 50 }, () => client.openStream()));
    for (const s of cut) {
      s.on('error', () => {});
      s.write('partial');
      s.destroy();
    }
    const deadline = Date.now() + 3000;
    while (client.nativeStreams() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(client.nativeStreams()).toBe(0);
    expect(client.stats().activeStreams).toBe(0);
  });
});
